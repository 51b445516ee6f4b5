"""EQTransformer's custom layers, written with ``keras.ops`` only (any Keras 3 backend).

Semantics follow the layers the published weights were trained with (EQTransformer's
``EqT_utils.py``, itself after keras-self-attention and keras-layer-normalization), so the
imported weights reproduce the published outputs.
"""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "eqt_monitor"
SOFTMAX_EPSILON = 1e-7  # Keras 2's K.epsilon(), added to the attention denominator


@keras.saving.register_keras_serializable(package=PACKAGE)
def hard_sigmoid_keras2(x):
    """Keras 2's hard sigmoid, ``clip(0.2 x + 0.5, 0, 1)`` (Keras 3's is ``clip(x/6 + 0.5, 0, 1)``)."""
    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def local_window(length: int, width: int | None):
    """``(length, length)`` boolean mask: query ``i`` may see keys ``i - width//2 <= j < i - width//2 + width``.

    ``width=None`` is global attention (returns ``None``).
    """
    if width is None:
        return None
    rows = ops.expand_dims(ops.arange(length), -1)
    cols = ops.expand_dims(ops.arange(length), 0)
    lower = rows - width // 2
    return ops.logical_and(lower <= cols, cols < lower + width)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeqSelfAttention(keras.layers.Layer):
    """Additive self-attention (keras-self-attention's ``SeqSelfAttention``, ``attention_type='additive'``).

    ``e[t, t'] = Wa . tanh(x_t Wt + x_t' Wx + bh) + ba``; the row maximum is subtracted, ``exp``
    taken, the local window (``attention_width``) applied as a 0/1 mask, and the weights are
    ``e / (sum(e) + 1e-7)``. Returns the attended sequence (same shape as the input).
    """

    def __init__(self, units: int = 32, attention_width: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.attention_width = attention_width

    def build(self, input_shape):
        dim = input_shape[-1]
        init = keras.initializers.GlorotNormal()
        # creation order = the published files' weight order: Wt, Wx, bh, Wa, ba
        self.wt = self.add_weight(shape=(dim, self.units), initializer=init, name="Add_Wt")
        self.wx = self.add_weight(shape=(dim, self.units), initializer=init, name="Add_Wx")
        self.bh = self.add_weight(shape=(self.units,), initializer="zeros", name="Add_bh")
        self.wa = self.add_weight(shape=(self.units, 1), initializer=init, name="Add_Wa")
        self.ba = self.add_weight(shape=(1,), initializer="zeros", name="Add_ba")

    def call(self, inputs):
        q = ops.expand_dims(ops.matmul(inputs, self.wt), 2)  # (B, T, 1, U)
        k = ops.expand_dims(ops.matmul(inputs, self.wx), 1)  # (B, 1, T, U)
        h = ops.tanh(q + k + self.bh)
        e = ops.squeeze(ops.matmul(h, self.wa), -1) + self.ba  # (B, T, T)
        e = ops.exp(e - ops.max(e, axis=-1, keepdims=True))
        window = local_window(ops.shape(inputs)[1], self.attention_width)
        if window is not None:
            e = e * ops.cast(window, e.dtype)
        a = e / (ops.sum(e, axis=-1, keepdims=True) + SOFTMAX_EPSILON)
        return ops.matmul(a, inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "units": self.units, "attention_width": self.attention_width}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product self-attention, optionally restricted to a local window.

    ``units`` is the total projection size, split evenly over ``heads``; the output is projected
    back to the input's feature size. The local window is the same as ``SeqSelfAttention``'s.
    """

    def __init__(self, units: int = 32, heads: int = 4, attention_width: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if units % heads:
            raise ValueError(f"units ({units}) must be a multiple of heads ({heads})")
        self.units = units
        self.heads = heads
        self.attention_width = attention_width

    def build(self, input_shape):
        dim = input_shape[-1]
        init = keras.initializers.GlorotUniform()
        self.wq = self.add_weight(shape=(dim, self.units), initializer=init, name="Wq")
        self.wk = self.add_weight(shape=(dim, self.units), initializer=init, name="Wk")
        self.wv = self.add_weight(shape=(dim, self.units), initializer=init, name="Wv")
        self.bq = self.add_weight(shape=(self.units,), initializer="zeros", name="bq")
        self.bk = self.add_weight(shape=(self.units,), initializer="zeros", name="bk")
        self.bv = self.add_weight(shape=(self.units,), initializer="zeros", name="bv")
        self.wo = self.add_weight(shape=(self.units, dim), initializer=init, name="Wo")
        self.bo = self.add_weight(shape=(dim,), initializer="zeros", name="bo")

    def _split_heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.heads, self.units // self.heads))
        return ops.transpose(x, (0, 2, 1, 3))  # (B, H, T, D)

    def call(self, inputs):
        q = self._split_heads(ops.matmul(inputs, self.wq) + self.bq)
        k = self._split_heads(ops.matmul(inputs, self.wk) + self.bk)
        v = self._split_heads(ops.matmul(inputs, self.wv) + self.bv)
        scale = (self.units // self.heads) ** -0.5
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * scale  # (B, H, T, T)
        window = local_window(ops.shape(inputs)[1], self.attention_width)
        if window is not None:
            logits = ops.where(window, logits, ops.full_like(logits, -1e9))
        context = ops.matmul(ops.softmax(logits, axis=-1), v)
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, length, self.units))
        return ops.matmul(context, self.wo) + self.bo

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "units": self.units, "heads": self.heads,
                "attention_width": self.attention_width}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward: ``relu(x W1 + b1) W2 + b2``, dropout on the hidden units when training."""

    def __init__(self, units: int = 128, dropout_rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout_rate = dropout_rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if dropout_rate > 0 else None

    def build(self, input_shape):
        dim = input_shape[-1]
        init = keras.initializers.GlorotNormal()
        self.w1 = self.add_weight(shape=(dim, self.units), initializer=init, name="W1")
        self.b1 = self.add_weight(shape=(self.units,), initializer="zeros", name="b1")
        self.w2 = self.add_weight(shape=(self.units, dim), initializer=init, name="W2")
        self.b2 = self.add_weight(shape=(dim,), initializer="zeros", name="b2")

    def call(self, inputs, training=None):
        h = ops.relu(ops.matmul(inputs, self.w1) + self.b1)
        if training and self.seed_generator is not None:
            h = keras.random.dropout(h, self.dropout_rate, seed=self.seed_generator)
        return ops.matmul(h, self.w2) + self.b2

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout_rate": self.dropout_rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNormalization(keras.layers.Layer):
    """Layer normalisation over the last axis, ``(x - mean) / sqrt(var + epsilon) * gamma + beta`` (epsilon 1e-14)."""

    def __init__(self, epsilon: float = 1e-14, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        dim = input_shape[-1]
        self.gamma = self.add_weight(shape=(dim,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(dim,), initializer="zeros", name="beta")

    def call(self, inputs):
        mean = ops.mean(inputs, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean), axis=-1, keepdims=True)
        return (inputs - mean) / ops.sqrt(variance + self.epsilon) * self.gamma + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal position encoding of Vaswani et al. (2017) to a ``(B, T, D)`` sequence."""

    def call(self, inputs):
        length, dim = ops.shape(inputs)[1], ops.shape(inputs)[2]
        positions = ops.expand_dims(ops.arange(length, dtype="float32"), -1)
        channels = ops.arange(dim)
        rates = ops.power(10000.0, -ops.cast(2 * (channels // 2), "float32") / float(dim))
        angles = positions * ops.expand_dims(rates, 0)
        encoding = ops.where(ops.expand_dims(channels % 2 == 0, 0), ops.sin(angles), ops.cos(angles))
        return inputs + ops.cast(ops.expand_dims(encoding, 0), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class MonteCarloSpatialDropout1D(keras.layers.SpatialDropout1D):
    """SpatialDropout1D that also drops at inference (Monte-Carlo dropout sampling).

    A functional model passes its own ``training`` flag to every layer, overriding one given
    when the graph was built, so staying active at inference needs its own layer.
    """

    def call(self, inputs, training=None):
        return super().call(inputs, training=True)
