"""Plan stage of the aot runtime: operators lowered to kernel calls (lowering,
ops/ per kernel family, c_literals) and the arena laid out (memory).  It reads
only the IR; analyze asks it what the aot runtime runs, codegen renders it."""
