"""The variant zoo: every spec builds and runs; published parameter counts; no backend-specific code."""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eqt_monitor.errors import ConfigError, UserError
from eqt_monitor.model.eqt import build_model
from eqt_monitor.model.params import count_params
from eqt_monitor.model.spec import ModelSpec, get_spec, list_specs, load_spec_file

ROOT = Path(__file__).resolve().parents[1]
# the 15 models named in issue 2
ZOO = {"original", "conservative", "bclos", "bc", "bo", "partial_vanilla", "vanilla", "genesis", "salvation",
       "4x4", "2lstm", "gru", "nb_filters_changed_eqtutils", "kernel_size_changed", "nb_filters_changed_trainer"}


@functools.cache
def built(name: str):
    """Each spec is built once for the whole file."""
    return build_model(get_spec(name))


def test_zoo_has_the_fifteen_specs_published_first():
    names = [spec.name for spec in list_specs()]
    assert set(names) == ZOO and len(names) == 15
    assert names[:2] == ["original", "conservative"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_spec_builds_and_runs_a_forward_pass(name):
    model = built(name)
    assert model.input_shape == (None, 6000, 3)
    assert model.output_names == ["detector", "picker_P", "picker_S"]
    x = np.random.default_rng(0).standard_normal((2, 6000, 3)).astype("float32")
    outputs = [np.asarray(o) for o in model(x, training=False)]
    assert [o.shape for o in outputs] == [(2, 6000, 1)] * 3
    for o in outputs:
        assert np.all(np.isfinite(o)) and o.min() >= 0.0 and o.max() <= 1.0


def test_published_parameter_counts():
    # numbers from the published files (Keras 2 model.count_params())
    assert built("original").count_params() == 373_495
    assert built("conservative").count_params() == 378_311


@pytest.mark.parametrize("name", sorted(ZOO))
def test_parameter_count_from_the_spec_equals_the_built_model(name):
    # `models list` counts from the spec so that it never builds a model
    assert count_params(get_spec(name)) == built(name).count_params()


def test_variants_differ_from_original_where_their_specs_say():
    layer_types = lambda m: [type(layer).__name__ for layer in m.layers]  # noqa: E731
    assert "Bidirectional" not in layer_types(built("bclos"))
    assert layer_types(built("gru")).count("GRU") == 2  # the two branch GRUs
    vanilla = layer_types(built("vanilla"))
    assert not {"LSTM", "GRU", "Bidirectional", "BatchNormalization"} & set(vanilla)
    assert vanilla.count("Add") == 4  # only the two transformer blocks' residual adds remain
    assert "PositionalEncoding" in layer_types(built("genesis"))
    assert layer_types(built("4x4")).count("MultiHeadSelfAttention") == 4 + 2
    assert layer_types(built("original")).count("SeqSelfAttention") == 2 + 2


def test_model_code_imports_nothing_backend_specific():
    offenders = []
    for path in sorted((ROOT / "eqt_monitor" / "model").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"^\s*(import|from)\s+(tensorflow|torch|jax)\b", line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
            elif path.name != "backend.py" and re.search(r"\b(tensorflow|torch|jax)\b", line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _other_backend() -> str | None:
    return next((b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None), None)


@pytest.mark.skipif(_other_backend() is None, reason="neither JAX nor PyTorch is installed")
def test_original_runs_on_another_backend_with_the_same_numbers(tmp_path, original_weights):
    from eqt_monitor.model.load import load_model

    x = np.random.default_rng(3).standard_normal((2, 6000, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np\n"
        "from eqt_monitor.model.backend import configure\n"
        f"configure({_other_backend()!r})\n"
        "from eqt_monitor.model.load import load_model\n"
        f"m = load_model('original', {str(original_weights)!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r})))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    expected = load_model("original", original_weights).predict(x)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-4)


def test_backend_configure_in_a_fresh_process():
    script = (
        "import json, os\n"
        "from eqt_monitor.errors import UserError\n"
        "from eqt_monitor.model.backend import configure\n"
        "out = {'chosen': configure('tensorflow'), 'env': os.environ['KERAS_BACKEND']}\n"
        "try:\n    configure('theano')\nexcept UserError as e:\n    out['unknown'] = str(e)\n"
        "import keras\n"
        "try:\n    configure('jax')\nexcept UserError as e:\n    out['switch'] = str(e)\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["chosen"] == "tensorflow" and out["env"] == "tensorflow"
    assert "theano" in out["unknown"]
    assert "jax" in out["switch"]  # either "already running on tensorflow" or "not installed"


def _mapping(**changes) -> dict:
    data = {field: getattr(get_spec("original"), field) for field in ModelSpec.__dataclass_fields__}
    data.update({k: list(v) for k, v in data.items() if isinstance(v, tuple)})
    data.update(changes)
    return data


def test_spec_errors_name_the_source_and_field():
    with pytest.raises(ConfigError, match=r"x\.yaml: unknown field 'filters'"):
        ModelSpec.from_mapping(_mapping(filters=[8]), "x.yaml")
    data = _mapping()
    del data["heads"]
    with pytest.raises(ConfigError, match=r"x\.yaml: missing field 'heads'"):
        ModelSpec.from_mapping(data, "x.yaml")
    with pytest.raises(ConfigError, match=r"x\.yaml: .*recurrent must be one of"):
        ModelSpec.from_mapping(_mapping(recurrent="rnn"), "x.yaml")
    with pytest.raises(ConfigError, match=r"x\.yaml: .*equal length"):
        ModelSpec.from_mapping(_mapping(encoder_kernels=[3, 3]), "x.yaml")
    with pytest.raises(ConfigError, match=r"x\.yaml: .*multiple of heads"):
        ModelSpec.from_mapping(_mapping(attention="multihead", heads=5), "x.yaml")
    with pytest.raises(UserError, match="unknown model 'eqt9'"):
        get_spec("eqt9")


def test_spec_file_name_must_match(tmp_path):
    import yaml

    path = tmp_path / "renamed.yaml"
    path.write_text(yaml.safe_dump(_mapping()))
    with pytest.raises(ConfigError, match="renamed.yaml: field 'name' is 'original'"):
        load_spec_file(path)
