"""Bad input anywhere is one clear line through the real CLI: exit 2, ``eqt-monitor: error: …`` naming
the file, line and field, never a traceback, an OOM or a hang (issue 11 item 6).

Most cases fail while the config or the flags are read, before TensorFlow loads. The ones that used
to exhaust memory or the stack run as subprocesses under a memory limit and a timeout.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from eqt_monitor.cli import main
from eqt_monitor.errors import UserError
from test_config import GOOD

ROOT = Path(__file__).resolve().parents[1]
SPAN = ["--start", "2014-05-01T00:00", "--end", "2014-05-01T01:00"]
MEMORY_LIMIT = 2 << 30  # bytes of address space for the subprocess cases
BASE = GOOD.replace("    longitude: -69.5\n", "    longitude: -69.5\n    elevation: 900\n")  # 11 lines
ELEVATION = "    elevation: 900\n"
STATION = "    station: PB01\n"
NESTED = "stations:\n  - " + "[" * 5000 + "]" * 5000 + "\n"
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)) + BASE

# (id, (old, new) applied to BASE, or a whole file as str/bytes, expected fragment after "stations.yaml:")
CONFIG_CASES = [
    ("elevation-nan", (ELEVATION, "    elevation: .nan\n"), "8: stations[0].elevation: expected a finite number, got nan"),
    ("elevation-range", (ELEVATION, "    elevation: 20000\n"), "8: stations[0].elevation: must be between -12000 and 9000 m"),
    ("latitude-huge-int", ("    latitude: -21.0\n", f"    latitude: {'9' * 400}\n"), "6: stations[0].latitude: expected a finite number, got 999"),
    ("station-empty", (STATION, '    station: ""\n'), "4: stations[0].station: expected 1-5 upper-case letters or digits, got ''"),
    ("station-path", (STATION, '    station: "../x"\n'), "4: stations[0].station: expected 1-5"),
    ("station-wildcard", (STATION, '    station: "*"\n'), "4: stations[0].station: expected 1-5"),
    ("station-lower-case", (STATION, "    station: pb01\n"), "4: stations[0].station: expected 1-5 upper-case"),
    ("network-9-letters", ("  - network: CX\n", "  - network: ABCDEFGHI\n"), "3: stations[0].network: expected 1-2"),
    ("location-list", (STATION, STATION + "    location: [00]\n"), "5: stations[0].location: expected 0-2"),
    ("location-bad", (STATION, STATION + "    location: A/\n"), "5: stations[0].location: expected 0-2"),
    ("n-picks-negative", (None, BASE + "association:\n  n_picks: -1\n"), "13: association.n_picks: must be in [1, 1000], got -1"),
    ("depth-reversed", (None, BASE + "association:\n  zlim: [30, 0]\n"), "13: association.zlim: need -10 <= top_km < bottom_km"),
    ("tolerance-negative", (None, BASE + "association:\n  tolerance: -0.5\n"), "13: association.tolerance: must be in (0, 60]"),
    ("margin-negative", (None, BASE + "association:\n  margin_km: -1\n"), "13: association.margin_km: must be in [0, 1000]"),
    ("residual-negative", (None, BASE + "association:\n  max_residual: -1\n"), "13: association.max_residual: must be in (0, 60]"),
    ("threads-zero", (None, BASE + "association:\n  n_threads: 0\n"), "13: association.n_threads: must be in [1, 256]"),
    ("table-spacing-zero", (None, BASE + "association:\n  zlim: [0, 20]\n  table_spacing_km: 0\n  layers:\n"
                            "    - {top_km: 0, vp: 5.0, vs: 2.9}\n"), "14: association.table_spacing_km: must be in [0.05, 50]"),
    ("pick-fraction-5", (None, BASE + "association:\n  min_pick_fraction: 5\n"), "13: association.min_pick_fraction: must be in [0, 1]"),
    ("zero-fill-huge", (None, BASE + "buffer:\n  zero_fill_max_s: 100000\n"), "13: buffer: gap policy: need 0 <= interpolate_max_s"),
    ("inventory-mseed", (None, BASE + "inventory: data.mseed\n"), "12: inventory: "),
    ("station-inventory-yaml", (None, "stations:\n  - inventory: other.yaml\n"), "2: stations[0].inventory: "),
    ("python-tag", (None, BASE + "agency: !!python/object/apply:os.system [echo hi]\n"), "12: refused: tag 'tag:yaml.org,2002:python/object/apply:os.system' not allowed"),
    ("not-utf8", (None, BASE.encode() + b"agency: \xff\xfe\n"), "12: not UTF-8 text (byte 0xff"),
    ("binary", (None, b"\x89HDF\r\n\x1a\n\x00\x00\x00"), "3: binary data (a NUL byte)"),
    ("state-dir-is-a-file", (None, BASE + "state_dir: data.mseed\n"), "12: state_dir: "),
    ("catalog-is-a-folder", (None, BASE + "catalog: archive\n"), "12: catalog: "),
    ("batch-size-huge", (None, BASE + "  batch_size: 100000\n"), "12: model.batch_size: must be between 1 and 1024"),
    ("config-is-a-list", (None, "- network: CX\n"), "1: (top level): expected a mapping"),
    ("model-unknown", ("  name: original\n", "  name: nope\n"), "10: model.name: unknown model 'nope'"),
    ("weights-missing", (None, BASE + "  weights: missing.h5\n"), "12: model.weights: weights file not found"),
    ("backend-unknown", (None, BASE + "  backend: numpy\n"), "12: model.backend: expected one of tensorflow"),
    ("source-scheme", ("source: sds://archive\n", "source: ftp://host/x\n"), "1: source: unknown source scheme 'ftp'"),
    ("metrics-addr", (None, BASE + "metrics:\n  addr: 9108\n"), "13: metrics.addr: expected HOST:PORT"),
    ("bad-timestamp", ("    latitude: -21.0\n", "    latitude: 2014-13-45\n"), "6: stations[0].latitude: unreadable value"),
    ("mapping-key", (None, BASE + "? [a, b]\n: 1\n"), "12: (top level): keys must be plain names"),
    ("huge-value-cut", (None, BASE + "agency: [" + "x, " * 3_000 + "]\n"), "12: agency: expected a string, got ['x', 'x'"),
]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with an empty SDS archive and a tiny miniSEED file beside the configs."""
    import numpy as np
    import obspy

    (tmp_path / "archive").mkdir()
    obspy.Trace(np.zeros(100, dtype=np.int32)).write(str(tmp_path / "data.mseed"), format="MSEED")
    (tmp_path / "other.yaml").write_text(BASE)
    return tmp_path


def write_config(folder: Path, spec: tuple[str | None, str | bytes]) -> Path:
    old, new = spec
    path = folder / "stations.yaml"
    if old is None:
        path.write_bytes(new if isinstance(new, bytes) else new.encode())
    else:
        assert old in BASE, old
        path.write_text(BASE.replace(old, new))
    return path


def one_error_line(err: str) -> str:
    """The single stderr line, checked to be an ``eqt-monitor: error:`` line without a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("eqt-monitor: error: "), err
    assert len(lines[0]) < 700, lines[0]
    return lines[0]


def run_cli(capsys, argv: list[str]) -> str:
    """``cli.main(argv)``, asserting exit 2 and one error line; returns that line."""
    assert main(argv) == 2
    return one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("spec, fragment", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_one_line(workdir, capsys, spec, fragment):
    path = write_config(workdir, spec)
    line = run_cli(capsys, ["replay", "--config", str(path), *SPAN, "--db", str(workdir / "c.sqlite")])
    assert f"{path}:{fragment}" in line, line


# (id, argv after the command with {cfg}/{dir} filled in, expected fragment)
FLAG_CASES = [
    ("start-after-end", ["replay", "--config", "{cfg}", "--start", "2014-05-02", "--end", "2014-05-01"], "--end (2014-05-01) must be after --start"),
    ("bad-time", ["replay", "--config", "{cfg}", "--start", "yesterday", "--end", "2014-05-01"], "--start: not a UTC time: 'yesterday'"),
    ("unknown-model", ["replay", "--config", "{cfg}", *SPAN, "--model", "nope"], "unknown model 'nope'"),
    ("bad-source", ["replay", "--config", "{cfg}", *SPAN, "--source", "ftp://x"], "source 'ftp://x': expected one of"),
    ("missing-archive", ["replay", "--config", "{cfg}", *SPAN, "--source", "sds://{dir}/nope"], "nope"),
    ("missing-weights", ["replay", "--config", "{cfg}", *SPAN, "--weights", "{dir}/nope.h5"], "nope.h5: weights file not found"),
    ("bad-chunk", ["replay", "--config", "{cfg}", *SPAN, "--chunk", "0"], "--chunk: must be between"),
    ("bad-cluster", ["replay", "--config", "{cfg}", *SPAN, "--cluster", "lokal:2"], "--cluster: expected local, local:N or tcp://HOST:PORT"),
    ("run-ppsd-longer-than-span", ["run", "--config", "{cfg}", "--quality-span", "60", "--ppsd-length", "120"],
     "--ppsd-length (120 s) must not exceed --quality-span (60 s)"),
    ("cluster-probabilities", ["replay", "--config", "{cfg}", *SPAN, "--cluster", "local:1", "--probabilities", "{dir}/p"],
     "--probabilities is not supported with --cluster"),
    ("inventory-mseed", ["replay", "--inventory", "{dir}/data.mseed", "--source", "sds://{dir}/archive", *SPAN], "data.mseed: not a StationXML file"),
    ("export-no-db", ["export", "--db", "{dir}/nope.sqlite", "--format", "csv", "--out", "{dir}/o.csv"], "nope.sqlite: no such catalog file"),
    ("plot-no-db", ["plot", "abc", "--db", "{dir}/nope.sqlite", "--out", "{dir}/o.png"], "nope.sqlite: no such catalog file"),
    ("plot-huge-span", ["plot", "abc", "--db", "{dir}/empty.sqlite", "--out", "{dir}/o.png", "--after", "1e9"], "--after: must be between 0 and 3600"),
    ("plot-unknown-event", ["plot", "abc", "--db", "{dir}/empty.sqlite", "--out", "{dir}/o.png"], "no event 'abc'"),
]


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES])
def test_bad_flags_are_one_line(workdir, capsys, argv, fragment):
    from eqt_monitor.catalog.store import Catalog

    Catalog(workdir / "empty.sqlite").close()
    cfg = write_config(workdir, (None, BASE))
    line = run_cli(capsys, [a.format(cfg=cfg, dir=workdir) for a in argv])
    assert fragment in line, line


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# configs that used to exhaust memory or the stack, or never finish: a subprocess each
SUBPROCESS_CASES = [
    ("elevation-inf", BASE.replace(ELEVATION, "    elevation: .inf\n"), ":8: stations[0].elevation: expected a finite number, got inf"),
    ("billion-laughs", BOMB, ":6: refused: more than 200000 YAML values once aliases are expanded"),
    ("deep-nesting", NESTED, ":2: refused: nested more than 32 levels deep"),
    ("50-MB", BASE + "agency: x\n" + "# padding\n" * 5_000_000, ": config larger than 1 MiB"),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in SUBPROCESS_CASES], ids=[c[0] for c in SUBPROCESS_CASES])
def test_hostile_config_is_refused_in_bounded_memory_and_time(workdir, text, fragment):
    path = workdir / "stations.yaml"
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "eqt_monitor.cli", "replay", "--config", str(path), *SPAN],
                            capture_output=True, text=True, timeout=60, env=env, preexec_fn=_limit_memory, cwd=workdir)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{path}{fragment}" in one_error_line(result.stderr)


def test_truncated_weights_file_is_one_line(workdir, capsys):
    import h5py
    import numpy as np
    import obspy

    weights = workdir / "truncated.h5"
    with h5py.File(weights, "w") as f:
        f.create_dataset("w", data=np.zeros(100_000))
    weights.write_bytes(weights.read_bytes()[:4096])
    cfg = write_config(workdir, (None, BASE))
    day = workdir / "data" / "2014" / "CX" / "PB01" / "HHZ.D"  # data for the span, so the weights are what fails
    day.mkdir(parents=True)
    obspy.Trace(np.zeros(6000, dtype=np.int32), header={"network": "CX", "station": "PB01", "channel": "HHZ",
                "sampling_rate": 100.0, "starttime": obspy.UTCDateTime(SPAN[1]) + 600}).write(
        str(day / "CX.PB01..HHZ.D.2014.121"), format="MSEED")
    line = run_cli(capsys, ["replay", "--config", str(cfg), *SPAN, "--weights", str(weights),
                            "--source", f"sds://{workdir / 'data'}"])
    assert f"{weights}: unreadable HDF5 weights file" in line, line


def test_replay_of_an_archive_without_data_fails_naming_the_whole_span(workdir, capsys, original_weights):
    cfg = write_config(workdir, (None, BASE))
    argv = ["replay", "--config", str(cfg), "--start", "2014-05-01T00:00", "--end", "2014-05-01T03:00",
            "--weights", str(original_weights), "--no-events", "--no-progress"]
    line = run_cli(capsys, argv)
    assert "no data for any of the 1 station(s) between 2014-05-01T00:00:00.000000Z and 2014-05-01T03:00:00" in line, line



def test_replay_library_and_command_name_a_span_without_data_alike(workdir, capsys):
    """The command's check before the model loads and the library's after reading say the same."""
    import obspy

    from eqt_monitor.config import load_config
    from eqt_monitor.replay import replay

    cfg = write_config(workdir, (None, BASE))
    line = run_cli(capsys, ["replay", "--config", str(cfg), "--start", "2014-05-01T00:00", "--end", "2014-05-01T03:00",
                            "--no-events", "--no-progress"])
    start, end = obspy.UTCDateTime("2014-05-01T00:00").timestamp, obspy.UTCDateTime("2014-05-01T03:00").timestamp
    with pytest.raises(UserError) as err:
        replay(load_config(cfg), start=start, end=end, predict_fn=lambda batch: batch, model_name="none",
               weights_sha256="none", progress=False)
    assert str(err.value) in line and "no data for any of the 1 station(s)" in line, (line, str(err.value))


def test_plot_of_an_event_whose_data_is_gone_is_one_line(workdir, capsys, original_weights):
    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.config import MonitorConfig, StationConfig
    from eqt_monitor.driver import CatalogWriter
    from eqt_monitor.records import Arrival, Event, Origin, Pick, StationKey

    key, t = StationKey("CX", "PB01", "", "HH"), 1398902400.0
    config = MonitorConfig(path=None, stations=[StationConfig(key, -21.04, -69.49, 900.0)])
    with Catalog(workdir / "event.sqlite") as catalog:  # a run whose archive has since lost the data
        writer = CatalogWriter(catalog, model="original", weights_sha256="0" * 64)
        picks = writer.stamp([Pick(key, "P", t, 0.9), Pick(key, "S", t + 5.0, 0.8)])
        writer.write(picks, [])
        catalog.add_events([Event(Origin(t - 3.0, -21.0, -69.6, 10.0, 0.1, "test"),
                                  tuple(Arrival(p, 0.0, 10.0) for p in picks))])
        writer.record_run(config, [f"sds://{workdir}/archive"], {})
        event = catalog.events()[0].short_id
    line = run_cli(capsys, ["plot", event, "--db", str(workdir / "event.sqlite"), "--out", str(workdir / "e.png"),
                            "--weights", str(original_weights)])
    assert f"event {event}: no waveforms of its 1 station(s) between" in line and "(pass --source URI)" in line, line
