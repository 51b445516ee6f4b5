"""Waveform sources behind one interface (``Source``), chosen by URI scheme with ``open_source``."""
from eqt_monitor.sources.base import Source, SourceError, channel_pattern, matches, open_source, select

__all__ = ["Source", "SourceError", "channel_pattern", "matches", "open_source", "select"]
