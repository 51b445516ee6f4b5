"""Helpers shared by the benchmark scripts: where the real data is, real windows, timing."""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHILE_START = "2014-05-01T00:00:00"


def shared_dir() -> Path:
    """``$EQT_SHARED`` or ``../shared`` beside the repository (as the tests)."""
    path = Path(os.environ.get("EQT_SHARED", ROOT.parent / "shared")).resolve()
    if not (path / "README.md").exists():
        raise SystemExit(f"real data not found at {path} (set EQT_SHARED)")
    return path


def chile_windows(n: int, hours: float = 1.0) -> np.ndarray:
    """``n`` raw 6000-sample [E, N, Z] windows (counts, float32) of CX.PB01 and CX.PB02, cut at a
    3000-sample step from the first ``hours`` of chile_2014 (alternating stations, repeating when
    ``n`` exceeds what that span holds)."""
    import obspy
    from obspy.clients.filesystem.sds import Client

    client = Client(str(shared_dir() / "data" / "chile_2014" / "sds"))
    t0 = obspy.UTCDateTime(CHILE_START)
    per_station = []
    for station in ("PB01", "PB02"):
        st = client.get_waveforms("CX", station, "", "HH?", t0, t0 + hours * 3600)
        st.merge(fill_value=0)
        length = min(len(tr.data) for tr in st)
        data = np.stack([st.select(component=c)[0].data[:length] for c in "ENZ"], axis=1).astype(np.float32)
        per_station.append([data[i:i + 6000] for i in range(0, length - 6000 + 1, 3000)])
    pool = [w for pair in zip(*per_station) for w in pair]
    return np.stack([pool[i % len(pool)] for i in range(n)])


def load_original():
    """The original EqT with the published weights from the shared folder."""
    from eqt_monitor.model.load import load_model

    return load_model("original", shared_dir() / "models" / "eqt_original.h5")


def chile_stream(hours: float):
    """The raw chile_2014 traces of CX.PB01 and CX.PB02 for the first ``hours``, read from the SDS
    archive (what a replay of the same span reads)."""
    import obspy
    from obspy.clients.filesystem.sds import Client

    client = Client(str(shared_dir() / "data" / "chile_2014" / "sds"))
    t0 = obspy.UTCDateTime(CHILE_START)
    return client.get_waveforms("CX", "PB0?", "*", "HH?", t0, t0 + hours * 3600)


def replay_chile(predict_fn: Callable[[np.ndarray], np.ndarray], hours: float, batch_size: int = 64):
    """``eqt_monitor.replay.replay`` of the repository's ``stations.yaml`` (chile_2014, 2 stations)
    over its first ``hours`` with ``predict_fn``, without association; returns the ``ReplaySummary``
    (``wall_s`` covers reading, preprocessing, prediction, stacking and picking)."""
    import dataclasses

    import obspy

    from eqt_monitor.config import load_config
    from eqt_monitor.replay import replay

    config = load_config(ROOT / "stations.yaml")
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, batch_size=batch_size))
    start = obspy.UTCDateTime(CHILE_START).timestamp
    summary, _, _ = replay(config, start=start, end=start + hours * 3600, predict_fn=predict_fn,
                           model_name="original", weights_sha256="benchmark", progress=False)
    return summary


def warm_up(predict_fn: Callable[[np.ndarray], np.ndarray], batch_size: int) -> None:
    """Call ``predict_fn`` once with every batch shape the ``Predictor`` can use at ``batch_size``
    (the batch size and the powers of two below it), so that no compilation lands in a timing."""
    from eqt_monitor.pipeline.predictor import batch_sizes

    for size in sorted({s for n in range(1, batch_size + 1) for s in batch_sizes(n, batch_size)}):
        predict_fn(np.zeros((size, 6000, 3), dtype=np.float32))


def timed(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> tuple[float, float]:
    """Mean wall and CPU (this process) seconds of ``fn()`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def machine() -> dict:
    """What the figures were measured on."""
    import numpy
    import scipy

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "load_average": os.getloadavg()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):  # the vector units really present (e.g. avx512f), not a guess
                flags = set(line.split(":", 1)[1].split())
                info["simd"] = sorted(f for f in flags if f.startswith(("avx", "fma", "amx", "sse4")))
                break
    except OSError:
        pass
    return info
