"""Backend-specific compilation of a model's inference (kept out of the backend-agnostic
``eqt_monitor.model`` package)."""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

MIN_XLA_BATCH = 32  # smaller batches skip XLA: compiling a shape costs ~7 s here, a small batch ~0.05 s


def compile_forward(model) -> Callable[[np.ndarray], list]:
    """Inference function ``batch -> [outputs]`` of a Keras model, compiled where the backend allows:
    on TensorFlow, batches of at least ``MIN_XLA_BATCH`` windows run an XLA-compiled ``tf.function``
    (one compilation per batch shape; if XLA cannot compile the graph, ``predict_on_batch`` takes
    over, with a warning); smaller batches, and other backends, run ``model.predict_on_batch``
    (which JAX's Keras backend compiles itself)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch
    import tensorflow as tf

    xla = tf.function(lambda batch: model(batch, training=False), jit_compile=True)
    state = {"xla": True}

    def forward(batch: np.ndarray) -> list:
        if not state["xla"] or len(batch) < MIN_XLA_BATCH:
            return model.predict_on_batch(batch)
        try:
            return xla(tf.constant(batch))
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            log.warning("XLA could not compile %s (%s); running it without XLA", model.name, str(error).splitlines()[0])
            state["xla"] = False
            return model.predict_on_batch(batch)

    return forward
