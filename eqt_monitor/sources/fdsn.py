"""FDSN dataselect as a bounded source: one bulk request per read (polling reuses it)."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import obspy
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import FDSNException, FDSNNoDataException

from eqt_monitor.records import StationKey
from eqt_monitor.sources.archive import read_mseed
from eqt_monitor.sources.base import Source, SourceError, channel_pattern, select


class FDSNSource(Source):
    """An FDSN web service's dataselect endpoint at ``base_url`` (``http://host:port``)."""

    def __init__(self, uri: str, base_url: str, timeout: float = 120.0) -> None:
        super().__init__(uri)
        self.base_url = base_url
        # service discovery asks for station/event endpoints a plain dataselect server lacks
        self.client = Client(base_url, timeout=timeout, _discover_services=False)

    def bulk_lines(self, stations: Sequence[StationKey], start: float, end: float) -> list[tuple]:
        """The bulk request: one ``(net, sta, loc, cha, start, end)`` line per station ("--" = empty location)."""
        t0, t1 = obspy.UTCDateTime(start), obspy.UTCDateTime(end)
        return [(k.network, k.station, k.location or "--", channel_pattern(k), t0, t1) for k in stations]

    def get_waveforms(self, stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
        """Every trace of ``stations`` in ``[start, end]``, fetched in one bulk request.

        The response bytes go through the same robust miniSEED reader as files, so a corrupt
        record costs that record only. An unreachable or failing server raises ``SourceError``.
        """
        return self.get_waveforms_since({key: start for key in stations}, end)

    def get_waveforms_since(self, since: Mapping[StationKey, float], end: float) -> obspy.Stream:
        """Each station's traces in ``[since[station], end]``, all in one bulk request (live polling)."""
        if not since:
            return obspy.Stream()
        lines = [line for key, start in since.items() for line in self.bulk_lines([key], start, end)]
        body = io.BytesIO()
        try:
            self.client.get_waveforms_bulk(lines, filename=body)
        except FDSNNoDataException:
            body = io.BytesIO()
        except (FDSNException, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise SourceError(f"source {self.uri!r}: dataselect request to {self.base_url} failed: {reason}") from exc
        start = min(since.values())
        found = select(read_mseed(body.getvalue(), name=f"{self.uri} response", start=start, end=end), list(since))
        self._report_missing(list(since), found, start, end)
        return found
