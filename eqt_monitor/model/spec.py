"""Model specs: one YAML file per variant in ``eqt_monitor/zoo/``."""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import yaml

from eqt_monitor.errors import ConfigError, UserError

RECURRENT_KINDS = ("lstm", "gru", "none")
ATTENTION_KINDS = ("additive", "multihead")
RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid_keras2")
PUBLISHED = ("original", "conservative")  # listed first, in this order
N_CHANNELS = 3  # model input channels [E, N, Z]
HEAD_KERNEL = 11  # kernel of the sigmoid Conv1D that ends each decoder


@dataclass(frozen=True)
class ModelSpec:
    """The architecture of one EQTransformer variant (see ``eqt_monitor/zoo/original.yaml`` for the fields)."""

    name: str
    description: str
    encoder_filters: tuple[int, ...]  # one Conv1D + MaxPool1D(2) stage per entry
    encoder_kernels: tuple[int, ...]
    res_cnn_kernels: tuple[int, ...]  # one pre-activation residual block per entry
    cnn_lstm_layers: int  # unidirectional recurrent layers right after the ResCNN ("bo")
    n_bilstm: int  # recurrent blocks: RNN -> Conv1D(rnn_units, 1) -> BN
    recurrent: str  # lstm | gru | none
    bidirectional: bool  # whether those blocks are bidirectional
    rnn_units: int
    transformer_blocks: int
    attention: str  # additive | multihead
    attention_units: int
    heads: int
    positional_encoding: bool  # additive sinusoidal encoding before the transformer blocks
    ff_units: int
    phase_lstm_layers: int  # recurrent layers at the head of each P/S branch
    local_attention_width: int
    dropout: float
    recurrent_dropout: float
    recurrent_activation: str  # sigmoid | hard_sigmoid_keras2 (Keras 2's clip(0.2x+0.5, 0, 1))
    weights: str | None  # registry name of published weights, or null

    def __post_init__(self) -> None:
        where = f"model spec {self.name!r}"
        if not self.encoder_filters or len(self.encoder_filters) != len(self.encoder_kernels):
            raise ConfigError(f"{where}: encoder_filters and encoder_kernels must be non-empty and of equal length")
        if self.recurrent not in RECURRENT_KINDS:
            raise ConfigError(f"{where}: recurrent must be one of {RECURRENT_KINDS}, not {self.recurrent!r}")
        if self.recurrent == "none" and (self.n_bilstm or self.cnn_lstm_layers or self.phase_lstm_layers):
            raise ConfigError(f"{where}: recurrent is 'none' but n_bilstm/cnn_lstm_layers/phase_lstm_layers are not 0")
        if self.attention not in ATTENTION_KINDS:
            raise ConfigError(f"{where}: attention must be one of {ATTENTION_KINDS}, not {self.attention!r}")
        if self.attention == "multihead" and (self.heads < 1 or self.attention_units % self.heads):
            raise ConfigError(f"{where}: attention_units ({self.attention_units}) must be a multiple of heads ({self.heads})")
        if self.transformer_blocks < 1:
            raise ConfigError(f"{where}: transformer_blocks must be at least 1")
        if self.recurrent_activation not in RECURRENT_ACTIVATIONS:
            raise ConfigError(f"{where}: recurrent_activation must be one of {RECURRENT_ACTIVATIONS}")
        if min(*self.encoder_filters, *self.encoder_kernels, *self.res_cnn_kernels, self.rnn_units,
               self.attention_units, self.ff_units, self.local_attention_width) < 1:
            raise ConfigError(f"{where}: filters, kernels and units must be positive")

    @classmethod
    def from_mapping(cls, data: dict, source: str) -> "ModelSpec":
        """Build a spec from a parsed YAML mapping; errors name ``source`` and the field."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of spec fields")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        missing = sorted(set(fields) - set(data))
        if unknown:
            raise ConfigError(f"{source}: unknown field {unknown[0]!r}")
        if missing:
            raise ConfigError(f"{source}: missing field {missing[0]!r}")
        values = {}
        for key, value in data.items():
            if key.startswith(("encoder_", "res_cnn_")):
                if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
                    raise ConfigError(f"{source}: field {key!r} must be a list of integers")
                value = tuple(value)
            values[key] = value
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def _zoo() -> Path:
    return Path(str(importlib.resources.files("eqt_monitor.zoo")))


def load_spec_file(path: str | Path) -> ModelSpec:
    """Read one spec YAML file; its ``name`` must match the file name."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read model spec: {exc}".replace("\n", " ")) from None
    spec = ModelSpec.from_mapping(data, str(path))
    if spec.name != path.stem:
        raise ConfigError(f"{path}: field 'name' is {spec.name!r} but the file is named {path.stem!r}")
    return spec


@functools.cache
def _all_specs() -> dict[str, ModelSpec]:
    files = sorted(p for p in _zoo().glob("*.yaml") if p.name != "registry.yaml")
    specs = {spec.name: spec for spec in map(load_spec_file, files)}
    order = [n for n in PUBLISHED if n in specs] + sorted(n for n in specs if n not in PUBLISHED)
    return {n: specs[n] for n in order}


def list_specs() -> list[ModelSpec]:
    """Every variant in the zoo: the published models first, then by name."""
    return list(_all_specs().values())


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name``; ``UserError`` naming the known models when there is none."""
    specs = _all_specs()
    if name not in specs:
        raise UserError(f"unknown model {name!r} (known: {', '.join(specs)})")
    return specs[name]
