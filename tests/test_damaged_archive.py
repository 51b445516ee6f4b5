"""Damaged archives lose only the damaged data (issue 12 items 2-4), on real chile_2014 day files
replayed with the published original weights: misaligned streams, NaN/inf samples, bit flips."""
from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import obspy
import pytest

from eqt_monitor.config import MonitorConfig, StationConfig
from eqt_monitor.records import Pick, StationKey
from eqt_monitor.replay import replay
from eqt_monitor.sources import archive

PB01 = StationKey("CX", "PB01", "", "HH")
DAY = "2014/CX/PB01/{cha}.D/CX.PB01..{cha}.D.2014.121"
START, END = obspy.UTCDateTime("2014-05-01T02:00").timestamp, obspy.UTCDateTime("2014-05-01T03:00").timestamp
DAMAGE_AT = obspy.UTCDateTime("2014-05-01T02:30").timestamp  # where the misaligned and NaN cases hit
AWAY_S = 60.0  # picks farther than this from the damage must not change
RECLEN = 512  # the chile day files' record length


@pytest.fixture(scope="module")
def model(original_weights):
    from eqt_monitor.model.load import load_model

    return load_model("original", original_weights)


def replay_pb01(model, root: Path, chunk_s: float = 3600.0) -> list[Pick]:
    config = MonitorConfig(path=None, stations=[StationConfig(PB01)], sources=[f"sds://{root}"])
    _, picks, _ = replay(config, start=START, end=END, predict_fn=model.predict, model_name="original",
                         weights_sha256=model.weights_sha256, progress=False, chunk_s=chunk_s)
    return picks


@pytest.fixture(scope="module")
def clean_picks(model, sds) -> list[Pick]:
    return replay_pb01(model, sds)


def damaged_archive(sds: Path, root: Path, damage: dict[str, Callable[[bytes], bytes]]) -> Path:
    """An SDS archive under ``root`` with PB01's day files, ``damage[channel]`` applied to their bytes
    (the others are links to the originals)."""
    for cha in ("HHE", "HHN", "HHZ"):
        src, dst = sds / DAY.format(cha=cha), root / DAY.format(cha=cha)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if cha in damage:
            dst.write_bytes(damage[cha](src.read_bytes()))
        else:
            dst.symlink_to(src)
    return root


def record_at(raw: bytes, time: float) -> int:
    """Byte offset of the record of a day file (records in time order) that holds ``time``."""
    lo, hi = 0, len(raw) // RECLEN
    while hi - lo > 1:  # records [lo, hi) hold the time
        mid = (lo + hi) // 2
        if obspy.read(io.BytesIO(raw[mid * RECLEN:(mid + 1) * RECLEN]))[0].stats.starttime.timestamp <= time:
            lo = mid
        else:
            hi = mid
    return lo * RECLEN


def key(pick: Pick) -> tuple[str, float]:
    return pick.phase, pick.time


def assert_same_picks_away_from(got: list[Pick], expected: list[Pick], spans: list[tuple[float, float]], away: float):
    """The picks farther than ``away`` s from every span are the same (probabilities to 1e-4)."""
    far = lambda p: all(p.time < lo - away or p.time > hi + away for lo, hi in spans)  # noqa: E731
    got, expected = sorted(filter(far, got), key=key), sorted(filter(far, expected), key=key)
    assert len(expected) > 20
    assert [key(p) for p in got] == [key(p) for p in expected]
    assert max(abs(a.probability - b.probability) for a, b in zip(got, expected)) <= 1e-4


def zeros(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes(100) + raw[at:]


def garbage(raw: bytes, at: int) -> bytes:
    return raw[:at] + np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes() + raw[at:]


def cut(raw: bytes, at: int) -> bytes:
    record = at - at % RECLEN
    return raw[:record + 300] + raw[record + RECLEN:]


@pytest.mark.slow
@pytest.mark.parametrize("damage", [zeros, garbage, cut])
def test_misaligned_stream_loses_only_the_damaged_record(damage, model, sds, clean_picks, tmp_path, caplog):
    raw = (sds / DAY.format(cha="HHZ")).read_bytes()
    record = record_at(raw, DAMAGE_AT)
    at = record + 333  # inside the record, not on a 128-byte boundary
    assert at % 128
    damaged = damage(raw, at)
    with caplog.at_level(logging.WARNING):
        got = archive.read_mseed(damaged, name="damaged HHZ")
    original = obspy.read(io.BytesIO(raw))
    hit = obspy.read(io.BytesIO(raw[record:record + RECLEN]))[0].stats.npts  # the damaged record's samples
    total = sum(tr.stats.npts for tr in original)
    recovered = sum(tr.stats.npts for tr in got)
    assert recovered >= 0.99 * (total - hit)
    for tr in got:  # every sample kept is the original one
        ref = original.slice(tr.stats.starttime, tr.stats.endtime)[0]
        np.testing.assert_array_equal(tr.data, ref.data)
    lines = [m for m in caplog.messages if "damaged HHZ" in m]
    assert len(lines) == 1 and "bytes" in lines[0] and "samples" in lines[0] and str(record) in lines[0]

    root = damaged_archive(sds, tmp_path / "sds", {"HHZ": lambda b: damaged})
    picks = replay_pb01(model, root)
    assert_same_picks_away_from(picks, clean_picks, [(DAMAGE_AT - 10, DAMAGE_AT + 10)], AWAY_S)


def float32_with(values: Callable[[np.ndarray, int], None]) -> Callable[[bytes], bytes]:
    """Re-encode a day file's data around the replayed hour as FLOAT32, with ``values(data, i)``
    writing bad samples at index ``i`` (the sample at ``DAMAGE_AT``)."""
    def encode(raw: bytes) -> bytes:
        st = obspy.read(io.BytesIO(raw), starttime=obspy.UTCDateTime(START - 600), endtime=obspy.UTCDateTime(END + 600))
        st.merge()
        tr = st[0]
        assert np.abs(tr.data).max() < 2**24  # exact in float32
        tr.data = tr.data.astype(np.float32)
        values(tr.data, int(round((DAMAGE_AT - tr.stats.starttime.timestamp) * tr.stats.sampling_rate)))
        buf = io.BytesIO()
        st.write(buf, format="MSEED", encoding="FLOAT32", reclen=4096)
        return buf.getvalue()
    return encode


def one_nan(data: np.ndarray, i: int) -> None:
    data[i] = np.nan


def hundred_nan_and_inf(data: np.ndarray, i: int) -> None:
    data[i:i + 100] = np.nan
    data[i + 10:i + 100:7] = np.inf
    data[i + 50] = -np.inf


@pytest.mark.slow
@pytest.mark.parametrize("bad", [one_nan, hundred_nan_and_inf])
def test_non_finite_samples_change_only_nearby_picks(bad, model, sds, clean_picks, tmp_path, caplog):
    root = damaged_archive(sds, tmp_path / "sds", {"HHZ": float32_with(bad)})
    with caplog.at_level(logging.WARNING):
        picks = replay_pb01(model, root)
    assert any("non-finite" in m and "CX.PB01..HHZ" in m for m in caplog.messages)
    assert_same_picks_away_from(picks, clean_picks, [(DAMAGE_AT, DAMAGE_AT + 1)], AWAY_S)


def flip_bits(fraction: float, seed: int) -> Callable[[bytes], bytes]:
    """Flip one random bit in the data section of ``fraction`` of the 512-byte records."""
    def damage(raw: bytes) -> bytes:
        out = bytearray(raw)
        rng = np.random.default_rng(seed)
        n = len(raw) // RECLEN
        for r in rng.choice(n, size=int(round(n * fraction)), replace=False):
            data_start = RECLEN * r + 64  # the chile records' data begin at byte 64
            out[data_start + int(rng.integers(0, RECLEN - 64))] ^= 1 << int(rng.integers(0, 8))
        return bytes(out)
    return damage


def undecodable_spans(raw: bytes, original: bytes) -> list[tuple[float, float]]:
    """Time spans of the changed records that ObsPy cannot decode without a complaint."""
    spans = []
    for offset in range(0, len(raw), RECLEN):
        if raw[offset:offset + RECLEN] == original[offset:offset + RECLEN]:
            continue
        stats = obspy.read(io.BytesIO(original[offset:offset + RECLEN]))[0].stats
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                obspy.read(io.BytesIO(raw[offset:offset + RECLEN]))
                continue
            except Exception:
                spans.append((stats.starttime.timestamp, stats.endtime.timestamp))
    return spans


@pytest.mark.slow
def test_bit_flips_make_no_picks_at_filled_gaps_and_each_file_is_read_once(model, sds, clean_picks, tmp_path,
                                                                           monkeypatch, caplog):
    damage = {cha: flip_bits(0.01, seed) for seed, cha in enumerate(("HHE", "HHN", "HHZ"))}
    root = damaged_archive(sds, tmp_path / "sds", damage)
    gaps = [span for cha in damage for span in undecodable_spans((root / DAY.format(cha=cha)).read_bytes(),
                                                                 (sds / DAY.format(cha=cha)).read_bytes())]
    in_hour = [g for g in gaps if START <= g[0] <= END]
    assert len(gaps) > 150 and len(in_hour) >= 10
    reads: dict[str, int] = {}
    real_read = archive.read_mseed

    def counting_read(data, *args, **kwargs):
        reads[str(data)] = reads.get(str(data), 0) + 1
        return real_read(data, *args, **kwargs)

    monkeypatch.setattr(archive, "read_mseed", counting_read)
    with caplog.at_level(logging.WARNING):
        picks = replay_pb01(model, root, chunk_s=900.0)  # 5 chunks, each needs all three files
    assert sorted(reads.values()) == [1, 1, 1] and len(reads) == 3
    for cha in damage:
        assert len([m for m in caplog.messages if m.startswith(str(root / DAY.format(cha=cha)))]) == 1
    clean = {key(p) for p in clean_picks}
    near_gap = [p for p in picks if any(lo - 2 <= p.time <= hi + 2 for lo, hi in gaps)]
    assert [p for p in near_gap if key(p) not in clean] == []
