"""Choosing the Keras backend before Keras is first imported."""
from __future__ import annotations

import importlib.util
import os
import sys

from ..errors import UserError

DEFAULT_BACKEND = "tensorflow"
# backend name -> the Python module it needs
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def configure(name: str | None) -> str:
    """Select the Keras backend ``name`` (``None``: ``$KERAS_BACKEND`` or tensorflow); return it.

    Sets ``KERAS_BACKEND`` when Keras has not been imported yet. Raises ``UserError`` for an
    unknown or uninstalled backend, or when Keras is already running on another backend.
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
    return name
