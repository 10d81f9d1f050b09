"""Model IR: the one data structure every stage after conversion shares."""

from .model import Model, ModelFormatError, Operator, Quantization, Tensor, parse_tflite

__all__ = ["Model", "ModelFormatError", "Operator", "Quantization", "Tensor", "parse_tflite"]
