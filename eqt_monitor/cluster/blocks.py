"""Association of a long cluster replay in time blocks, as the picks of each block are written.

A span longer than one block is not one giant association: once every chunk up to a time is
written, the picks since the last block are fed to an ``events.live.LiveAssociator`` on the
catalog, which commits an event only once no later pick can change it (its origin is more than the
longest travel time behind the complete data) — the live slicing rule. Its horizon is stored under
a key of this span, so a re-run after a kill resumes it; a short span is associated whole by
``locate.locate_span``, exactly as the serial replay does.
"""
from __future__ import annotations

from eqt_monitor.catalog.ids import digest
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import MonitorConfig
from eqt_monitor.driver import fetcher
from eqt_monitor.events.live import LiveAssociator
from eqt_monitor.locate import add_magnitudes, locate_span, read_inventories

BLOCK_S = 86400.0  # spans longer than this are associated in blocks of it


class SpanAssociation:
    """Associates the picks of ``[start, end)``: in blocks while the replay writes (long spans), or
    whole at the end (spans of at most ``block_s``)."""

    def __init__(self, catalog: Catalog, config: MonitorConfig, start: float, end: float, source: str | None,
                 settings: str, block_s: float = BLOCK_S) -> None:
        self.catalog, self.config, self.start, self.end, self.block_s = catalog, config, start, end, block_s
        self.fetch = fetcher(config, source)
        self.events = 0
        self.live: LiveAssociator | None = None
        if end - start > block_s and config.coordinates():
            key = f"replay-associator/{digest(settings, repr(start), repr(end))}"
            self.live = LiveAssociator(config.coordinates(), config.association, store=catalog, horizon_key=key)
            self.fed_until = max(start, self.live.horizon)  # the associator reloaded what it needs from before
            self.inventory = read_inventories(config.inventories)

    def complete(self, until: float) -> None:
        """Every pick before ``until`` is in the catalog: associate the block(s) that completes."""
        if self.live is not None and until - self.fed_until >= self.block_s:
            self._commit(self.live.advance, until)

    def finish(self) -> int:
        """Associate what is left; returns the number of new events of the whole run."""
        if self.live is None:
            self.events += len(locate_span(self.catalog, self.config, self.start, self.end, self.fetch))
        else:
            self._commit(lambda _: self.live.flush(), self.end)
        return self.events

    def _commit(self, commit, until: float) -> None:
        self.live.feed(self.catalog.picks(self.fed_until, until))
        new = commit(until)
        add_magnitudes(self.catalog, new, self.fetch, self.inventory)
        self.events += len(new)
        self.fed_until = until
