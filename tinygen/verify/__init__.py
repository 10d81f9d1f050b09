"""Verify stage: the same inputs on the device and on the TFLM reference, compared.

    vectors      the input vectors (from --data, --calib, or random)
    device_run   running them on connected devices and on the reference
    compare      per-output metrics and float-vs-int8 drift
    measure      latency, per-op time, memory, stack
    results      the data the above fill (OutputMetrics, VerifyReport, BoardRun)
    api          verify_model(): the whole stage as one typed call

Reports (text, JSON, JUnit, HTML) are written by tinygen.report from these
results; nothing here prints a report.
"""

from .api import VerifyOutcome, verify_model
from .compare import (
                         compare_outputs,
                         detection_row_mask,
                         float_comparison,
                         stacked_outputs,
)
from .device_run import (
                         arena_hint,
                         check_device_matches,
                         combined_payload,
                         is_stateful,
                         precheck_port,
                         run_board,
                         run_float_model,
                         run_reference,
                         run_vectors,
                         verify_on_client,
                         verify_ports,
)
from .measure import (
                         add_stack_figure,
                         latency_figures,
                         load_memory_plan,
                         memory_figures,
                         profile_figures,
)
from .results import BoardRun, OutputMetrics, VerifyReport
from .vectors import (
                         DEFAULT_SAMPLES,
                         make_vector_set,
                         make_vectors,
                         precheck_sample_files,
)

__all__ = [
    "BoardRun", "DEFAULT_SAMPLES", "OutputMetrics", "VerifyOutcome", "VerifyReport",
    "add_stack_figure", "arena_hint", "check_device_matches", "combined_payload",
    "compare_outputs", "detection_row_mask", "float_comparison", "is_stateful",
    "latency_figures", "load_memory_plan", "make_vector_set", "make_vectors", "memory_figures",
    "precheck_port", "precheck_sample_files", "profile_figures", "run_board", "run_float_model",
    "run_reference", "run_vectors", "stacked_outputs", "verify_model", "verify_on_client",
    "verify_ports",
]
