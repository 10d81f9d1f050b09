"""What a verification produced, per output and per board: plain data that the
comparison fills and the report writers read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class OutputMetrics:
    index: int
    name: str
    shape: list[int]
    exact_match_pct: float
    max_abs_diff_lsb: int
    rel_l2: float
    cosine: float
    rmse: float
    mae: float
    top1_agreement: float | None
    passed: bool
    max_abs_diff: float = 0.0      # in output units (dequantized)


@dataclass
class VerifyReport:
    passed: bool
    bit_exact: bool
    board: str
    runtime: str
    port: str
    model_signature: str
    vectors: int
    tolerance_lsb: int
    outputs: list[OutputMetrics]
    latency: dict
    memory: dict
    device: dict = field(default_factory=dict)
    duration_s: float = 0.0
    # What the verdict does not cover (synthetic calibration, float/int8 drift) and
    # what a threshold the user set (--min-agreement, --min-accuracy) failed on.
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    accuracy: dict | None = None
    detection: dict | None = None        # detectors: mAP@0.5 per level (detection.py)
    place: str | None = None      # the labgrid place the board was acquired through

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BoardRun:
    """One board's part of a verification: its report and the raw data the
    HTML report plots.  ``error`` is set (and ``report`` None) when the
    exchange with this board failed: no verdict for it."""
    label: str
    report: VerifyReport | None = None
    device_outs: list = field(default_factory=list)
    counters: list[int] = field(default_factory=list)
    profiles: list[list[int]] = field(default_factory=list)   # per vector, per op
    error: str | None = None
    port: str | None = None       # the URL, when ``label`` is a farm place's name
    exception: BaseException | None = field(default=None, repr=False, compare=False)

