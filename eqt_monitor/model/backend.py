"""Choosing the Keras backend before Keras is first imported, and importing it without the
native libraries' start-up chatter."""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import tempfile

from eqt_monitor.errors import UserError

DEFAULT_BACKEND = "tensorflow"
# backend name -> the Python module it needs
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

# What TensorFlow/XLA/absl print to file descriptor 2 while loading on a CPU-only machine, before
# absl's logging is initialised (so TF_CPP_MIN_LOG_LEVEL cannot silence it). Anything else that
# appears on stderr then — a real error — is passed on.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} "  # absl INFO/WARNING lines: I0000 00:00:... file.cc:N] ...
    r"|E\d{4} .*(cuInit|cuda_|cudart|CUDA|cuDNN|cuFFT|cuBLAS|TensorRT)"  # no GPU driver on this machine
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    r"|\s*$)"
)


def is_noise(line: str) -> bool:
    """Whether ``line`` (from the native libraries' stderr) is start-up chatter, not an error."""
    return bool(_NOISE.match(line))


def configure(name: str | None, threads: int | None = None) -> str:
    """Select the Keras backend ``name`` (``None``: ``$KERAS_BACKEND`` or tensorflow), import Keras
    on it with the start-up chatter filtered out (see ``import_keras``), and return the name.
    ``threads``: on TensorFlow, its intra-op pool size (inter-op: 1), set before its runtime starts;
    ``None`` leaves TensorFlow's default (every core).

    Raises ``UserError`` for an unknown or uninstalled backend, or when Keras is already running on
    another backend.
    """
    name = name or os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise UserError(f"unknown Keras backend {name!r} (choose one of {', '.join(BACKENDS)})")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise UserError(f"Keras is already running on the {current!r} backend; cannot switch to {name!r}")
        return name
    if importlib.util.find_spec(BACKENDS[name]) is None:
        raise UserError(f"Keras backend {name!r} needs the Python package {BACKENDS[name]!r}, which is not installed")
    os.environ["KERAS_BACKEND"] = name
    import_keras(threads)
    return name


def import_keras(threads: int | None = None) -> None:
    """Import Keras (and initialise TensorFlow's devices, where the CUDA probe prints its error)
    with file descriptor 2 captured; lines that are not start-up chatter are written back to stderr.
    ``threads``: see ``configure``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            if threads is not None and os.environ["KERAS_BACKEND"] == "tensorflow":
                pools = importlib.import_module("tensorflow").config.threading
                pools.set_intra_op_parallelism_threads(threads)
                pools.set_inter_op_parallelism_threads(1)
            keras = importlib.import_module("keras")
            if keras.backend.backend() == "tensorflow":
                importlib.import_module("tensorflow").config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if not is_noise(line):
                    print(line, file=sys.stderr)
