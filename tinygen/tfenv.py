"""Importing TensorFlow quietly and lazily (it is slow and chatty)."""

from __future__ import annotations

import contextlib
import os
import sys


def _prepare_env() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def tf():
    _prepare_env()
    with quiet():
        import logging

        import tensorflow
        tensorflow.get_logger().setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
    return tensorflow


def keras():
    tf()
    import keras as keras_module
    return keras_module


@contextlib.contextmanager
def quiet():
    """Silence C-level stderr (TF and the TFLite converter print through it)."""
    if os.environ.get("TINYGEN_DEBUG"):
        yield
        return
    import warnings
    sys.stderr.flush()
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        fd = None
    saved = os.dup(fd) if fd is not None else None
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        if fd is not None:
            os.dup2(devnull, fd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if fd is not None:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
        os.close(devnull)
