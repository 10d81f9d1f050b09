"""The pipeline's dependency direction, checked on every import in tinygen/.

Each module belongs to one stage; a stage may import its own stage and the
stages below it, never one above (docs/architecture.md draws the same
order).  Imports inside functions count too: a deferred import is still a
dependency, only a hidden one.  Private names (`_x`) of another module are
not imported at all.
"""

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "tinygen"

# bottom (0) to top; a module may import modules of its level or lower.
LAYERS = [
    ("foundation", ["errors", "paths", "tfenv", "sizes"]),
    ("ir", ["ir"]),
    ("inputs", ["boards", "load", "data", "reference", "models"]),
    ("convert", ["convert"]),
    ("plan", ["plan"]),
    ("prune", ["prune"]),
    ("analyze", ["analyze"]),
    ("codegen", ["codegen"]),
    ("update", ["update"]),
    ("project", ["project"]),
    ("device", ["device"]),
    ("verify", ["verify"]),
    ("report", ["report"]),
    ("farm", ["farm"]),
    ("front ends", ["cli", "pytest_plugin", "tools", "__main__", "__init__"]),
]
LEVEL = {name: k for k, (_, names) in enumerate(LAYERS) for name in names}


def stage_of(module: str) -> str:
    """tinygen.analyze.ops -> analyze; tinygen.verify -> verify."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path):
    """(imported module, [names], line) for every import, at any depth."""
    tree = ast.parse(path.read_text())
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tinygen"):
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("tinygen"):
                names = [a.name for a in node.names]
                if node.module is None or target.count(".") == 0:
                    # `from . import x` / `from tinygen import x`: x is a module
                    for name in names:
                        yield f"{target}.{name}", [], node.lineno
                else:
                    yield target, names, node.lineno


def test_no_upward_imports_and_no_private_names():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        mine = stage_of(me)
        assert mine in LEVEL, f"{me}: stage {mine!r} is not in LAYERS"
        for target, names, line in imports_of(path):
            theirs = stage_of(target)
            if theirs not in LEVEL:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if LEVEL[theirs] > LEVEL[mine]:
                problems.append(f"{where}: {mine} imports {target} ({theirs} is above it)")
            if theirs != mine or target.split(".")[:3] != me.split(".")[:3]:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private and theirs != mine:
                    problems.append(f"{where}: takes private {private} from {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_modules():
    graph = {}
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    for me, path in files.items():
        deps = set()
        for target, names, _ in imports_of(path):
            # `from pkg import name` names a module when pkg.name is one
            for cand in [target] + [f"{target}.{n}" for n in names]:
                if cand in files and cand != me:
                    deps.add(cand)
        graph[me] = deps

    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    # a package's __init__ re-exporting its own modules is not a cycle of stages
    cycles = [c for c in cycles if not all(
        m.split(".")[:2] == c.split(" -> ")[0].split(".")[:2] and
        m.endswith("__init__") for m in c.split(" -> "))]
    assert not cycles, "\n".join(cycles)
