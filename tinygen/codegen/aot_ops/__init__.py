"""Kernel families of the aot runtime; each module registers its lowerings on import."""

import importlib as _importlib
import pkgutil as _pkgutil

# Import every module of this package once, so a new kernel family only has to
# be dropped in here (no list of imports to keep in sync between authors).
for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")
