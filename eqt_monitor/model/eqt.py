"""One builder for every EQTransformer variant: a ``ModelSpec`` in, an uncompiled ``keras.Model`` out.

Layer names follow the published Keras 2 model (Keras 2 numbered each class in creation
order: ``conv1d_1`` ... ``conv1d_44``, ``attentionD0``, ``detector``, ...), so published
weights map onto the layers by name.
"""
from __future__ import annotations

from collections import Counter

import keras
from keras import layers

from eqt_monitor.records import WINDOW_SAMPLES
from eqt_monitor.model.layers import (
    FeedForward,
    LayerNormalization,
    MonteCarloSpatialDropout1D,
    MultiHeadSelfAttention,
    PositionalEncoding,
    SeqSelfAttention,
    hard_sigmoid_keras2,
)
from eqt_monitor.model.spec import HEAD_KERNEL, N_CHANNELS, ModelSpec

OUTPUT_NAMES = ("detector", "picker_P", "picker_S")
# the published models' regularisation of the encoder and decoder convolutions
CONV_REGULARISATION = {"kernel_regularizer": {"l2": 1e-6}, "bias_regularizer": {"l1": 1e-4}}


class _Names:
    """Keras 2 style layer names: ``<prefix>_<n>``, numbered per prefix in creation order."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def __call__(self, prefix: str) -> str:
        self._counts[prefix] += 1
        return f"{prefix}_{self._counts[prefix]}"


def _regularised_conv(filters: int, kernel: int, name: str) -> layers.Conv1D:
    return layers.Conv1D(filters, kernel, padding="same", activation="relu", name=name,
                         kernel_regularizer=keras.regularizers.L1L2(**CONV_REGULARISATION["kernel_regularizer"]),
                         bias_regularizer=keras.regularizers.L1L2(**CONV_REGULARISATION["bias_regularizer"]))


def _recurrent(spec: ModelSpec, names: _Names) -> layers.Layer:
    """One LSTM or GRU of ``rnn_units`` returning sequences, with the spec's recurrent activation."""
    kind, cls = ("lstm", layers.LSTM) if spec.recurrent == "lstm" else ("gru", layers.GRU)
    activation = hard_sigmoid_keras2 if spec.recurrent_activation == "hard_sigmoid_keras2" else "sigmoid"
    return cls(spec.rnn_units, return_sequences=True, recurrent_activation=activation, dropout=spec.dropout,
               recurrent_dropout=spec.recurrent_dropout, name=names(kind))


def _attention(spec: ModelSpec, width: int | None, name: str) -> layers.Layer:
    if spec.attention == "additive":
        return SeqSelfAttention(spec.attention_units, attention_width=width, name=name)
    return MultiHeadSelfAttention(spec.attention_units, spec.heads, attention_width=width, name=name)


def _res_cnn_block(x, kernel: int, spec: ModelSpec, names: _Names, mc_dropout: bool):
    """Pre-activation residual block: [BN -> ReLU -> SpatialDropout1D -> Conv1D] x 2, plus identity."""
    shortcut = x
    filters = x.shape[-1]
    for _ in range(2):
        x = layers.BatchNormalization(name=names("batch_normalization"))(x)
        x = layers.Activation("relu", name=names("activation"))(x)
        dropout = MonteCarloSpatialDropout1D if mc_dropout else layers.SpatialDropout1D
        x = dropout(spec.dropout, name=names("spatial_dropout1d"))(x)
        x = layers.Conv1D(filters, kernel, padding="same", name=names("conv1d"))(x)
    return layers.Add(name=names("add"))([shortcut, x])


def _transformer_block(x, spec: ModelSpec, names: _Names, attention_name: str):
    """Global self-attention -> add -> LayerNorm -> FeedForward -> add -> LayerNorm."""
    attended = _attention(spec, None, attention_name)(x)
    x = LayerNormalization(name=names("layer_normalization"))(layers.Add(name=names("add"))([x, attended]))
    fed = FeedForward(spec.ff_units, dropout_rate=spec.dropout, name=names("feed_forward"))(x)
    return LayerNormalization(name=names("layer_normalization"))(layers.Add(name=names("add"))([x, fed]))


def _decoder(x, spec: ModelSpec, names: _Names, lengths: list[int], head: str):
    """Mirror of the encoder: UpSampling1D(2) + Conv1D per stage, then a sigmoid Conv1D head.

    After each upsampling the sequence is cropped symmetrically back to the matching encoder
    length as soon as the excess is even (for the published 7-stage encoder: one sample on each
    side after the fourth upsampling, 752 -> 750), and at the last stage in any case.
    """
    stages = list(zip(reversed(spec.encoder_filters), reversed(spec.encoder_kernels)))
    length = lengths[-1]
    for step, (filters, kernel) in enumerate(stages):
        x = layers.UpSampling1D(2, name=names("up_sampling1d"))(x)
        length *= 2
        excess = length - lengths[-2 - step]
        if excess > 0 and (excess % 2 == 0 or step == len(stages) - 1):
            x = layers.Cropping1D((excess // 2, excess - excess // 2), name=names("cropping1d"))(x)
            length -= excess
        x = _regularised_conv(filters, kernel, names("conv1d"))(x)
    return layers.Conv1D(1, HEAD_KERNEL, padding="same", activation="sigmoid", name=head)(x)


def build_model(spec: ModelSpec, *, mc_dropout: bool = False) -> keras.Model:
    """Build the variant ``spec`` (uncompiled): input ``(None, 6000, 3)`` [E,N,Z], outputs
    ``[detector, picker_P, picker_S]``, each ``(None, 6000, 1)``.

    With ``mc_dropout`` the ResCNN's SpatialDropout1D stays active at inference (Monte-Carlo
    sampling, as the published model was saved); otherwise inference is deterministic.
    """
    names = _Names()
    inputs = keras.Input((WINDOW_SAMPLES, N_CHANNELS), name="input")

    x, lengths = inputs, [WINDOW_SAMPLES]
    for filters, kernel in zip(spec.encoder_filters, spec.encoder_kernels):
        x = _regularised_conv(filters, kernel, names("conv1d"))(x)
        x = layers.MaxPooling1D(2, padding="same", name=names("max_pooling1d"))(x)
        lengths.append(-(-lengths[-1] // 2))

    for kernel in spec.res_cnn_kernels:
        x = _res_cnn_block(x, kernel, spec, names, mc_dropout)
    for _ in range(spec.cnn_lstm_layers):
        x = _recurrent(spec, names)(x)
    for _ in range(spec.n_bilstm):
        rnn = _recurrent(spec, names)
        x = layers.Bidirectional(rnn, name=names("bidirectional"))(x) if spec.bidirectional else rnn(x)
        x = layers.Conv1D(spec.rnn_units, 1, padding="same", name=names("conv1d"))(x)
        x = layers.BatchNormalization(name=names("batch_normalization"))(x)
    if spec.positional_encoding:
        x = PositionalEncoding(name="positional_encoding")(x)
    for block in range(spec.transformer_blocks):
        last = block == spec.transformer_blocks - 1
        x = _transformer_block(x, spec, names, "attentionD" if last else f"attentionD{block}")
    encoded = x

    outputs = [_decoder(encoded, spec, names, lengths, "detector")]
    for phase in "PS":
        y = encoded
        for _ in range(spec.phase_lstm_layers):
            y = _recurrent(spec, names)(y)
        y = _attention(spec, spec.local_attention_width, f"attention{phase}")(y)
        outputs.append(_decoder(y, spec, names, lengths, f"picker_{phase}"))
    return keras.Model(inputs, outputs, name=spec.name)
