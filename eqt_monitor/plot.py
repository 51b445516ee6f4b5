"""The event plot: each station's three components around an event, nearest first, with the picks
and the model's detection / P / S probability traces under them.

:func:`model_probabilities` re-runs the model over the waveforms through the same
``driver.StationPipeline`` replay and the daemon use, with the recorded run's settings (so the
traces are the ones the picks came from); :func:`plot_event` only draws, from an ObsPy
``Stream`` and ``ProbabilitySegment``s.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from obspy import Stream, UTCDateTime  # noqa: E402

from eqt_monitor.config import MonitorConfig  # noqa: E402
from eqt_monitor.pipeline.buffer import COMPONENT_SLOT, SLOT_NAMES  # noqa: E402
from eqt_monitor.pipeline.orientation import Rotation  # noqa: E402
from eqt_monitor.records import Event, ProbabilitySegment, StationKey  # noqa: E402

COMPONENT_COLOURS = {"E": "0.55", "N": "0.35", "Z": "k"}
PHASE_COLOURS = {"P": "tab:blue", "S": "tab:red"}
PROBABILITY_COLOURS = {"detection": "tab:green", "p": "tab:blue", "s": "tab:red"}


def model_probabilities(stream: Stream, predict_fn: Callable[[np.ndarray], np.ndarray],
                        config: MonitorConfig) -> dict[StationKey, ProbabilitySegment]:
    """Run ``config``'s stations in ``stream`` through the pipeline (``driver.StationPipeline``, as
    replay and the daemon do) and join each station's stacked D/P/S output into one segment.

    Samples no window covered (gaps) are NaN.
    """
    from eqt_monitor.driver import StationPipeline

    pipeline = StationPipeline(config, predict_fn)
    for trace in stream:
        pipeline.add(trace)
    pieces: dict[StationKey, list[ProbabilitySegment]] = {}
    for out in (pipeline.process(), pipeline.close()):
        for seg in out.probabilities:
            pieces.setdefault(seg.station, []).append(seg)
    return {key: _join(segs) for key, segs in pieces.items()}


def _join(segments: list[ProbabilitySegment]) -> ProbabilitySegment:
    rate = segments[0].sampling_rate
    start = min(s.start for s in segments)
    n = int(round((max(s.end for s in segments) - start) * rate)) + 1
    arrays = {name: np.full(n, np.nan, np.float32) for name in PROBABILITY_COLOURS}
    for s in segments:
        i = int(round((s.start - start) * rate))
        for name in arrays:
            values = getattr(s, name)
            arrays[name][i:i + len(values)] = values
    return ProbabilitySegment(segments[0].station, start, arrays["detection"], arrays["p"], arrays["s"], rate)


def oriented(traces: Stream, key: StationKey, orientation: Mapping[str, tuple[float, float]] | None) -> Stream:
    """One station's traces with the horizontals turned to true N/E as the pipeline turns them
    (``orientation.Rotation`` on the buffer's [E, N, Z] slots), cut to the components' common span and
    named ``…E``/``…N``/``…Z``; the traces as they are when nothing needs turning."""
    merged = traces.copy().merge(method=1, fill_value=0)
    rotation = Rotation(key, orientation)
    slots = {}
    for tr in merged:
        slot = COMPONENT_SLOT.get(tr.stats.channel[-1])
        if slot is not None and slot not in slots:
            slots[slot] = tr
            rotation.saw(slot, tr.stats.channel)
    if len(slots) < 3 or not rotation.turns:
        return traces
    t0 = max(tr.stats.starttime for tr in slots.values())
    t1 = min(tr.stats.endtime for tr in slots.values())
    if t1 <= t0:
        return traces
    cut = {slot: tr.slice(t0, t1) for slot, tr in slots.items()}
    n = min(tr.stats.npts for tr in cut.values())
    rows = rotation.apply(np.column_stack([cut[slot].data[:n].astype(np.float64) for slot in range(3)]))
    out = Stream()
    for slot, tr in cut.items():
        turned = tr.copy()
        turned.data = rows[:, slot]
        turned.stats.channel = tr.stats.channel[:-1] + SLOT_NAMES[slot]
        out += turned
    return out


def plot_event(event: Event, stream: Stream, probabilities: Mapping[StationKey, ProbabilitySegment],
               out: str | Path, **options) -> Path:
    """:func:`draw_event` written to ``out`` (PNG); ``options`` go to it."""
    fig = draw_event(event, stream, probabilities, **options)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def draw_event(event: Event, stream: Stream, probabilities: Mapping[StationKey, ProbabilitySegment], *,
               distances: Mapping[StationKey, float] | None = None, before: float = 5.0, after: float = 40.0,
               max_stations: int = 12,
               orientations: Mapping[StationKey, Mapping[str, tuple[float, float]] | None] | None = None):
    """The figure of ``event``: up to ``max_stations`` stations by epicentral distance, each a
    waveform axes (E, N, Z) over a probability axes.

    ``distances`` (km) defaults to the arrivals' distances; time is in seconds after the origin.
    Stations with an orientation (``orientations``, as the run recorded it) are drawn with their
    horizontals turned to N/E, as the model saw them (:func:`oriented`).
    """
    if distances is None:
        distances = {a.pick.station: a.distance_km for a in event.arrivals}
    t0 = event.origin.time
    stations = stations_by_distance(distances, stream, probabilities)[:max_stations]
    if not stations:
        raise ValueError("no waveforms or probabilities for any station of the event")
    fig, axes = plt.subplots(2 * len(stations), 1, sharex=True, figsize=(10, 1.9 * len(stations) + 1),
                             gridspec_kw={"height_ratios": [2, 1] * len(stations)}, squeeze=False)
    axes = axes[:, 0]
    for i, key in enumerate(stations):
        wave_ax, prob_ax = axes[2 * i], axes[2 * i + 1]
        _draw_waveforms(wave_ax, oriented(_traces(stream, key), key, (orientations or {}).get(key)), t0, before, after)
        wave_ax.set_ylabel(f"{key.network}.{key.station}\n{distances[key]:.1f} km", fontsize=8)
        seg = probabilities.get(key)
        if seg is not None:
            t = seg.start - t0 + np.arange(len(seg.detection)) / seg.sampling_rate
            for name, colour in PROBABILITY_COLOURS.items():
                prob_ax.plot(t, getattr(seg, name), color=colour, lw=0.8, label=name[0].upper())
        prob_ax.set_ylim(-0.05, 1.05)
        prob_ax.set_yticks([0, 1])
        for a in event.arrivals:
            if a.pick.station == key:
                for ax in (wave_ax, prob_ax):
                    ax.axvline(a.pick.time - t0, color=PHASE_COLOURS.get(a.pick.phase, "k"), lw=1.0, ls="--")
    axes[1].legend(loc="upper right", fontsize=7, ncol=3, frameon=False)
    axes[-1].set_xlim(-before, after)
    axes[-1].set_xlabel(f"seconds after {UTCDateTime(t0).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-4]}Z")
    o, m = event.origin, event.magnitude
    ml = f"ML {m.value:.1f}" if m is not None and m.value is not None else "no ML"
    fig.suptitle(f"{event.short_id}: {o.latitude:.3f}, {o.longitude:.3f}, {o.depth_km:.1f} km, {ml}, "
                 f"{len(event.arrivals)} arrivals (dashed: P blue, S red)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def stations_by_distance(distances: Mapping[StationKey, float], stream: Stream,
                         probabilities: Mapping[StationKey, ProbabilitySegment]) -> list[StationKey]:
    """The stations with waveforms or probabilities, nearest first (ties by key)."""
    return [k for k in sorted(distances, key=lambda k: (distances[k], k))
            if _traces(stream, k) or k in probabilities]


def _traces(stream: Stream, key: StationKey) -> Stream:
    return stream.select(network=key.network, station=key.station, location=key.location,
                         channel=f"{key.channel_prefix or '*'}?")


def _draw_waveforms(ax, traces: Stream, t0: float, before: float, after: float) -> None:
    """Each component band-passed 1-45 Hz (as the model sees it), scaled by the station's peak, stacked E, N, Z."""
    view = traces.slice(UTCDateTime(t0 - before - 10), UTCDateTime(t0 + after + 10)).copy()
    view.detrend("demean")
    view.filter("bandpass", freqmin=1.0, freqmax=45.0)
    view = view.slice(UTCDateTime(t0 - before), UTCDateTime(t0 + after))
    peak = max((float(np.nanmax(np.abs(tr.data - np.mean(tr.data)))) for tr in view if tr.stats.npts), default=0.0)
    for tr in view:
        if not tr.stats.npts:
            continue
        comp = {"1": "N", "2": "E"}.get(tr.stats.channel[-1], tr.stats.channel[-1])
        offset = {"E": 2.0, "N": 1.0}.get(comp, 0.0)
        t = tr.stats.starttime.timestamp - t0 + np.arange(tr.stats.npts) / tr.stats.sampling_rate
        y = (tr.data - np.mean(tr.data)) / (2.2 * peak if peak > 0 else 1.0)
        ax.plot(t, y + offset, color=COMPONENT_COLOURS.get(comp, "k"), lw=0.5)
    ax.set_yticks([0, 1, 2])
    ax.set_yticklabels(["Z", "N", "E"], fontsize=7)
    ax.set_ylim(-0.7, 2.7)
