"""Waveform sources: bounded ``Source`` and live ``LiveSource`` (``base``), chosen by URI scheme
from one table (``registry``: ``open_source``, ``open_live``)."""
from eqt_monitor.sources.base import LiveOptions, LiveSource, Source, SourceError, channel_pattern, matches, select
from eqt_monitor.sources.registry import SCHEMES, open_live, open_source

__all__ = ["SCHEMES", "LiveOptions", "LiveSource", "Source", "SourceError", "channel_pattern", "matches",
           "open_live", "open_source", "select"]
