"""Commands start quietly: TensorFlow's native start-up chatter never reaches stderr, real errors
do, and commands that only check files answer before TensorFlow is loaded at all."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eqt_monitor.model.backend import is_noise

EXE = str(Path(sys.executable).with_name("eqt-monitor"))
# lines TensorFlow 2.21 printed on this CPU-only machine before the filter
CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796345513.698975    4027 port.cc:153] oneDNN custom operations are on. You may see slightly",
    "I0000 00:00:1796345513.700385    4027 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
    "E0000 00:00:1796345521.536436    4154 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.",
]


@pytest.mark.parametrize("line", CHATTER)
def test_start_up_chatter_is_recognised(line):
    assert is_noise(line)


@pytest.mark.parametrize("line", [
    "F0000 00:00:1796345521.536436    4154 op_kernel.cc:12] Check failed: something",
    "E0000 00:00:1796345521.536436    4154 shape_inference.cc:3] Invalid argument: bad shape",
    "Traceback (most recent call last):",
    "eqt-monitor: error: something real",
])
def test_real_errors_pass(line):
    assert not is_noise(line)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(list(args), capture_output=True, text=True, timeout=180, env=env)


def test_keras_loads_without_a_line_on_stderr():
    code = ("from eqt_monitor.model.backend import configure; configure('tensorflow'); import keras, sys; "
            "import tensorflow as tf; tf.constant(1.0) + 1.0; print(keras.backend.backend())")
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0 and result.stdout.strip() == "tensorflow"
    assert result.stderr == ""


def test_a_native_error_while_loading_is_passed_on():
    code = ("import os; from eqt_monitor.model import backend; import importlib\n"
            "real = importlib.import_module\n"
            "def noisy(name, *rest):\n"
            "    os.write(2, b'E0000 00:00:1.0 1 loader.cc:1] Invalid argument: a real problem\\n')\n"
            "    return real(name, *rest)\n"
            "backend.importlib.import_module = noisy\n"
            "backend.configure('tensorflow')\n")
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0
    lines = result.stderr.splitlines()  # once per module imported while the capture is on
    assert lines and set(lines) == {"E0000 00:00:1.0 1 loader.cc:1] Invalid argument: a real problem"}


@pytest.mark.parametrize("args", [
    ["--help"],
    ["export", "--db", "/nonexistent/catalog.sqlite", "--format", "csv", "--out", "/tmp/never.csv"],
    ["plot", "0123456789abcdef", "--db", "/nonexistent/catalog.sqlite", "--out", "/tmp/never.png"],
])
def test_file_only_commands_answer_before_tensorflow_loads(args):
    code = ("import sys; from eqt_monitor.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, rc)")
    result = _run(sys.executable, "-c", code, *args)
    assert result.stdout.strip().splitlines()[-1] == f"False False {0 if args == ['--help'] else 2}"
    assert all(not is_noise(line) or not line.strip() for line in result.stderr.splitlines())
    assert "Traceback" not in result.stderr


def test_plot_of_an_unknown_event_is_one_line_and_no_tensorflow(tmp_path):
    from eqt_monitor.catalog.store import Catalog

    with Catalog(tmp_path / "c.sqlite"):
        pass
    result = _run(EXE, "plot", "0123456789abcdef", "--db", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert result.stderr == f"eqt-monitor: error: {tmp_path / 'c.sqlite'}: no event '0123456789abcdef'\n"
