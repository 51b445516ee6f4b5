"""The helicorder: a station's vertical component over (part of) a day as ObsPy's dayplot, with the
catalog's P and S picks as coloured ticks and its associated events as ObsPy's event markers.

ObsPy's dayplot draws its ``events`` (a star and a text box each); the picks are short vertical
lines placed with the dayplot's own mapping of a time to a line and an x position
(``WaveformPlotting._plot_event``): line ``n - 1 - k`` holds ``[start + k·interval, start + (k+1)·interval)``
and x runs over ``[0, width)`` across it (``width``: the dayplot's columns, one more than its x axis
limit, ``width - 1``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from obspy import Stream, UTCDateTime  # noqa: E402

from eqt_monitor.records import Event, Pick  # noqa: E402

PHASE_COLOURS = {"P": "tab:blue", "S": "tab:red"}


def vertical(stream: Stream) -> Stream:
    """The vertical channel of one station's stream (``Z``, else ``3``), merged; empty when it has none."""
    for comp in ("Z", "3"):
        chosen = stream.select(component=comp)
        if len(chosen):
            ids = sorted({tr.id for tr in chosen})
            out = chosen.select(id=ids[0]).copy()
            out.merge(fill_value=None)
            return out
    return Stream()


def pick_position(time: float, start: float, end: float, interval: float, width: float) -> tuple[float, float]:
    """A time's ``(x, line centre y)`` in the dayplot's axes coordinates (as ObsPy places its events)."""
    lines = math.ceil((end - start) / interval - 1e-9)
    k, frac = divmod((time - start) / interval, 1.0)
    return frac * width, lines - int(k) - 0.5


def draw_helicorder(stream: Stream, picks: Sequence[Pick], events: Sequence[Event], start: float, end: float, *,
                    interval_min: float = 15.0, title: str | None = None) -> Figure:
    """The figure of ``stream``'s vertical channel over ``[start, end)`` with ``picks`` ticked (one
    ``LineCollection`` per phase, labelled ``"P picks"``/``"S picks"``: P blue, S red) and ``events``
    marked at their origin times (ObsPy's dayplot events)."""
    z = vertical(stream)
    if not len(z):
        raise ValueError("no vertical-component data to draw")
    interval = interval_min * 60.0
    markers = [{"time": UTCDateTime(e.origin.time),
                "text": (f"ML {e.magnitude.value:.1f} " if e.magnitude and e.magnitude.value is not None else "")
                + e.short_id[:8]} for e in events if start <= e.origin.time < end]
    fig = z.plot(type="dayplot", interval=interval_min, starttime=UTCDateTime(start), endtime=UTCDateTime(end),
                 events=markers, handle=True, size=(1100, 900), color=["k", "0.35"], one_tick_per_line=True,
                 title=title or f"{z[0].id} {UTCDateTime(start).strftime('%Y-%m-%d %H:%M')} – "
                                f"{UTCDateTime(end).strftime('%H:%M')} UTC: picks P blue, S red", show_y_UTC_label=False)
    ax = fig.axes[0]
    width = ax.get_xlim()[1] + 1.0  # the dayplot's columns (ObsPy's ``width``): its axes end at width - 1
    for phase in sorted({p.phase for p in picks}):
        places = [pick_position(p.time, start, end, interval, width) for p in picks
                  if p.phase == phase and start <= p.time < end]
        if places:
            xs, ys = zip(*places)
            ax.vlines(xs, [y - 0.45 for y in ys], [y + 0.45 for y in ys], color=PHASE_COLOURS.get(phase, "k"),
                      lw=1.2, zorder=5, label=f"{phase} picks")
    return fig


def plot_helicorder(stream: Stream, picks: Sequence[Pick], events: Sequence[Event], start: float, end: float,
                    out: str | Path, *, interval_min: float = 15.0, title: str | None = None) -> Path:
    """:func:`draw_helicorder` written to ``out`` (PNG)."""
    fig = draw_helicorder(stream, picks, events, start, end, interval_min=interval_min, title=title)
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
