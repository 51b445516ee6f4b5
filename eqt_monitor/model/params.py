"""Parameter counts of a variant from its spec alone (no Keras), so ``models list`` answers in a
moment; ``tests/test_model_build.py`` checks them against the built models."""
from __future__ import annotations

from eqt_monitor.model.spec import HEAD_KERNEL, N_CHANNELS, ModelSpec


def _conv(d_in: int, filters: int, kernel: int) -> int:
    return kernel * d_in * filters + filters


def _batch_norm(d: int) -> int:
    return 4 * d  # gamma, beta, moving mean, moving variance (Keras counts the last two too)


def _recurrent(spec: ModelSpec, d_in: int) -> int:
    """One LSTM (4 gates) or GRU (3 gates, Keras 3's reset_after: two bias rows) of ``rnn_units``."""
    u = spec.rnn_units
    if spec.recurrent == "lstm":
        return 4 * (d_in * u + u * u + u)
    return 3 * (d_in * u + u * u) + 6 * u


def _attention(spec: ModelSpec, d: int) -> int:
    u = spec.attention_units
    if spec.attention == "additive":
        return 2 * d * u + u + u + 1  # Wt, Wx, bh, Wa, ba
    return 3 * (d * u + u) + u * d + d  # Wq/Wk/Wv with biases, Wo with bias


def _decoder(spec: ModelSpec, d: int) -> int:
    total = 0
    for filters, kernel in zip(reversed(spec.encoder_filters), reversed(spec.encoder_kernels)):
        total += _conv(d, filters, kernel)
        d = filters
    return total + _conv(d, 1, HEAD_KERNEL)


def count_params(spec: ModelSpec) -> int:
    """The number of weights (trainable and not) of ``eqt.build_model(spec)``."""
    total, d = 0, N_CHANNELS
    for filters, kernel in zip(spec.encoder_filters, spec.encoder_kernels):
        total += _conv(d, filters, kernel)
        d = filters
    for kernel in spec.res_cnn_kernels:
        total += 2 * (_batch_norm(d) + _conv(d, d, kernel))
    for _ in range(spec.cnn_lstm_layers):
        total += _recurrent(spec, d)
        d = spec.rnn_units
    for _ in range(spec.n_bilstm):
        total += _recurrent(spec, d) * (2 if spec.bidirectional else 1)
        d_rnn = spec.rnn_units * (2 if spec.bidirectional else 1)
        total += _conv(d_rnn, spec.rnn_units, 1) + _batch_norm(spec.rnn_units)
        d = spec.rnn_units
    for _ in range(spec.transformer_blocks):
        total += _attention(spec, d) + 2 * d  # attention, layer norm
        total += d * spec.ff_units + spec.ff_units + spec.ff_units * d + d + 2 * d  # feed-forward, layer norm
    total += _decoder(spec, d)
    for _ in "PS":
        d_phase = d
        for _ in range(spec.phase_lstm_layers):
            total += _recurrent(spec, d_phase)
            d_phase = spec.rnn_units
        total += _attention(spec, d_phase) + _decoder(spec, d_phase)
    return total
