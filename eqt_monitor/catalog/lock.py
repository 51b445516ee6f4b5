"""One holder at a time among processes sharing a PostgreSQL catalog: a session-level advisory lock
(``pg_try_advisory_lock``) on a connection of its own. The server releases it when the holder's
session ends — a clean exit, a SIGKILL, a lost machine (once TCP keepalive or the server notices) —
so another process takes it at its next try."""
from __future__ import annotations

import logging

from eqt_monitor.catalog.backend import one_line, redacted

log = logging.getLogger(__name__)

ASSOCIATOR_LOCK = 0x65717461  # the advisory lock key of "the daemon that associates" ("eqta")


class AdvisoryLock:
    """``held()`` tries to take the lock (or checks the session that holds it is still there)."""

    def __init__(self, uri: str, key: int = ASSOCIATOR_LOCK) -> None:
        import psycopg

        self._psycopg, self.uri, self.key = psycopg, uri, key
        self._db = None
        self._held = False

    def held(self) -> bool:
        """Whether this process holds the lock now; False (and tried again next time) when the server
        cannot be reached."""
        try:
            if self._db is None or self._db.closed:
                self._held = False
                self._db = self._psycopg.connect(self.uri, autocommit=True, connect_timeout=10,
                                                 application_name="eqt-monitor lock", keepalives_idle=10,
                                                 keepalives_interval=5, keepalives_count=3)
            if self._held:
                self._db.execute("SELECT 1")  # the session, and with it the lock, is still there
            else:
                self._held = bool(self._db.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0])
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
            if self._held:
                log.warning("%s: lost the association lock's session: %s", redacted(self.uri), one_line(exc))
            self.close()
        return self._held

    def close(self) -> None:
        """Give the lock up (by ending the session)."""
        self._held = False
        if self._db is not None:
            try:
                self._db.close()
            except self._psycopg.Error:
                pass
            self._db = None
