"""The size vocabulary: one name and one definition for every memory figure
that inspect, build, verify, the JSON and the HTML report print.

Before it, "weights" meant the .tflite's length in one place, the constant
tensors in another and weights plus requantization tables in a third; a
user comparing two outputs compared different things.  Every writer takes
its names from here, and docs/sizes.md and `--help` print these definitions.
"""

from __future__ import annotations

import textwrap

# (JSON key, printed name, definition), in the order reports print them.
TERMS: tuple[tuple[str, str, str], ...] = (
    ("model_flash", "model flash",
     "the model's constant data in flash: weights + biases + metadata (tflm: the whole "
     ".tflite array; aot: the constant arrays, requantization tables included)"),
    ("code_flash", "code flash",
     "all other flash: runtime or generated kernels, serial protocol, startup, C library "
     "(total flash - model flash)"),
    ("flash_total", "total flash",
     "what the firmware image takes in flash (code flash + model flash, .data's initial "
     "image included)"),
    ("arena", "arena",
     "the activations: the tensor arena the model's intermediate tensors live in"),
    ("stack_used", "stack",
     "the stack's high-water mark over the run (of stack_size reserved)"),
    ("ram_total", "total RAM",
     "statically allocated RAM: .data + .bss (arena, reserved stack, runtime state)"),
)

NAME = {key: name for key, name, _ in TERMS}
DEFINITION = {key: text for key, _, text in TERMS}
KEYS = tuple(key for key, _, _ in TERMS)


def help_text() -> str:
    """The definitions, for an argparse epilog (RawDescriptionHelpFormatter)."""
    width = max(len(name) for _, name, _ in TERMS)
    lines = ["sizes (the same words in every report; docs/sizes.md):"]
    for _, name, text in TERMS:
        lines += textwrap.wrap(text, 86, initial_indent=f"  {name:<{width}}  ",
                               subsequent_indent=" " * (width + 4))
    return "\n".join(lines)


def _b(value: int) -> str:
    return f"{value:,} B"


def summary_lines(mem: dict) -> list[str]:
    """The memory figures of a report as terminal lines, in the vocabulary's words.
    Figures missing from ``mem`` (not measured) are left out, never guessed."""
    lines = []
    if mem.get("flash_total") is not None:
        lines.append(f"total flash {_b(mem['flash_total'])} = model flash "
                     f"{_b(mem['model_flash'])} + code flash {_b(mem['code_flash'])}")
    elif mem.get("model_flash") is not None:
        lines.append(f"model flash {_b(mem['model_flash'])} (not linked: no code flash)")
    ram = []
    if mem.get("ram_total") is not None:
        ram.append(f"total RAM {_b(mem['ram_total'])}")
    if mem.get("arena") is not None:
        ram.append(f"arena {_b(mem['arena'])}")
    if mem.get("stack_used") is not None:
        ram.append(f"stack {_b(mem['stack_used'])} used of {_b(mem['stack_size'])}")
    if ram:
        lines.append(", ".join(ram))
    return lines
