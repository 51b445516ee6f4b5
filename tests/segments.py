"""Test helper: a bounded ObsPy stream through ``StationBuffer``s the way records arrive live
(the product's drivers go through ``driver.StationPipeline``)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import obspy

from eqt_monitor.pipeline.buffer import GapPolicy, StationBuffer
from eqt_monitor.records import Segment, StationKey


def station_key(trace: obspy.Trace) -> StationKey:
    """The station a trace belongs to (its channel code minus the component letter)."""
    s = trace.stats
    return StationKey(s.network, s.station, s.location, s.channel[:-1])


def iter_segments(
    stream: obspy.Stream,
    *,
    policy: GapPolicy = GapPolicy(),
    channels: dict[StationKey, Sequence[str]] | None = None,
    slice_s: float = 30.0,
) -> dict[StationKey, list[Segment]]:
    """All segments of a bounded stream, per station, through ``StationBuffer``s.

    The traces are cut at absolute ``slice_s`` boundaries and fed in time order, the way
    records arrive live, so memory per station stays bounded while the stream is consumed.
    """
    buffers: dict[StationKey, StationBuffer] = {}
    pieces: list[tuple[int, int, obspy.Trace]] = []
    for order, trace in enumerate(stream):
        key = station_key(trace)
        if key not in buffers:
            buffers[key] = StationBuffer(key, policy=policy, channels=(channels or {}).get(key))
        stats = trace.stats
        t0, rate, npts = stats.starttime.timestamp, stats.sampling_rate, stats.npts
        if not rate > 0:
            buffers[key].add(trace)  # the buffer counts and reports it
            continue
        first = int(np.floor(t0 / slice_s))
        last = int(np.floor((t0 + (npts - 1) / rate) / slice_s)) if npts else first
        for k in range(first, last + 1):
            lo = max(0, int(np.ceil((k * slice_s - t0) * rate - 1e-6)))
            hi = min(npts, int(np.ceil(((k + 1) * slice_s - t0) * rate - 1e-6)))
            if hi > lo:
                header = {
                    "network": stats.network, "station": stats.station, "location": stats.location,
                    "channel": stats.channel, "sampling_rate": rate, "starttime": stats.starttime + lo / rate,
                }
                pieces.append((k, order, obspy.Trace(trace.data[lo:hi], header=header)))
    pieces.sort(key=lambda item: (item[0], item[1]))
    out: dict[StationKey, list[Segment]] = {key: [] for key in buffers}
    for i, (k, _, piece) in enumerate(pieces):
        key = station_key(piece)
        buffers[key].add(piece)
        if i + 1 == len(pieces) or pieces[i + 1][0] != k:
            for key, buffer in buffers.items():
                out[key] += buffer.pop_ready()
    for key, buffer in buffers.items():
        out[key] += buffer.close()
    return out
