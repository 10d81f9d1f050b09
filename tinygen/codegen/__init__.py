"""Code generation: one backend per runtime (aot, tflm)."""
