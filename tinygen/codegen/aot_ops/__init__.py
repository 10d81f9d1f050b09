"""Kernel families of the aot runtime; each module registers its lowerings on import."""
