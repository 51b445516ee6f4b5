"""Backend-specific compilation of a model's inference (kept out of the backend-agnostic
``eqt_monitor.model`` package)."""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)


def compile_forward(model) -> Callable[[np.ndarray], list]:
    """Inference function ``batch -> [outputs]`` of a Keras model, compiled where the backend allows:
    on TensorFlow an XLA-compiled ``tf.function`` (one compilation per batch shape; if XLA cannot
    compile the graph, the plain graph runs instead, with a warning); on other backends
    ``model.predict_on_batch``, which their Keras backends already compile (JAX) or run eagerly."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch
    import tensorflow as tf

    xla = tf.function(lambda batch: model(batch, training=False), jit_compile=True, reduce_retracing=True)
    graph = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    state = {"fn": xla}

    def forward(batch: np.ndarray) -> list:
        try:
            return state["fn"](tf.constant(batch))
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            if state["fn"] is graph:
                raise
            log.warning("XLA could not compile %s (%s); running the plain TensorFlow graph",
                        model.name, str(error).splitlines()[0])
            state["fn"] = graph
            return graph(tf.constant(batch))

    return forward
