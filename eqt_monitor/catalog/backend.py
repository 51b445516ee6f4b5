"""Where the catalog lives and the few things SQLite and PostgreSQL do differently.

A catalog is an SQLite file (the default: a path) or a PostgreSQL database (a libpq URI,
``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?host=/socket/dir]``). ``Catalog`` writes one SQL
text for both: ``?`` placeholders, ``INSERT ... ON CONFLICT``, ``TRUE``/``FALSE``; a connection here
translates what must differ: placeholders (``%s``), the DDL's types (SQLite's ``REAL`` and 64-bit
``INTEGER`` are PostgreSQL's ``DOUBLE PRECISION`` and ``BIGINT``, ``AUTOINCREMENT`` an identity),
where the schema version is kept (``PRAGMA user_version``; a one-row table on PostgreSQL), and
which driver errors mean "the database is unreachable or refuses writes" (``operational``).
"""
from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from eqt_monitor.errors import UserError

SERVER_SCHEMES = ("postgresql", "postgres")
VERSION_TABLE = "eqt_monitor_schema"  # PostgreSQL: the one row holding the schema version
SCHEMA_LOCK = 0x6571746D  # advisory lock key serialising schema creation/migration ("eqtm")


def is_server(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database (a ``postgresql://`` URI) rather than a file."""
    return isinstance(target, str) and urlsplit(target).scheme.lower() in SERVER_SCHEMES


def catalog_target(value: str | Path) -> str | Path:
    """A catalog as given in the config or on the command line: a server URI stays text, else a path."""
    return value if is_server(value) else Path(value)


def redacted(uri: str) -> str:
    """The URI without its password (for log lines and messages)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}"))


def one_line(exc: BaseException) -> str:
    """A driver's (possibly multi-line) message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


class SQLiteConnection:
    """An SQLite file in WAL mode (readers go on while one writer writes)."""

    operational: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)

    def __init__(self, path: Path) -> None:
        self.where = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")

    def execute(self, sql: str, args: Sequence = ()):
        return self._db.execute(sql, args)

    def execute_many(self, sql: str, rows: Iterable[Sequence]) -> int:
        """Run ``sql`` once per row; how many rows it changed in all."""
        return self._db.executemany(sql, rows).rowcount

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL can)
            self._db.execute("ROLLBACK")

    def ddl(self, statement: str) -> str:
        return statement

    first_version = 1  # the oldest schema version MIGRATIONS bring up to date here

    @contextmanager
    def migrating(self):
        """Foreign keys off around a schema change (SQLite's way to rebuild tables; the PRAGMA is a
        no-op inside a transaction), checked by ``foreign_key_problem`` before it commits."""
        self._db.execute("PRAGMA foreign_keys=OFF")
        try:
            yield
        finally:
            self._db.execute("PRAGMA foreign_keys=ON")

    def foreign_key_problem(self) -> str | None:
        broken = self._db.execute("PRAGMA foreign_key_check").fetchone()
        return None if broken is None else f"table {broken[0]} row {broken[1]} refers to a missing {broken[2]} row"

    def lock_schema(self) -> None:
        """Nothing: ``BEGIN IMMEDIATE`` already keeps other writers out."""

    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def set_schema_version(self, version: int) -> None:
        self._db.execute(f"PRAGMA user_version={int(version)}")

    def has_tables(self) -> bool:
        return self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0] > 0

    def close(self) -> None:
        self._db.close()


class Row(tuple):
    """A result row readable by position and by column name (like ``sqlite3.Row``)."""

    names: dict[str, int]

    def __getitem__(self, key):  # type: ignore[override]
        return tuple.__getitem__(self, self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor):
    names = {c.name: i for i, c in enumerate(cursor.description or ())}
    cls = type("Row", (Row,), {"names": names})
    return lambda values: cls(values)


_PG_TYPES = [(re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
              "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
             (re.compile(r"\bINTEGER\b"), "BIGINT"),
             (re.compile(r"\bREAL\b"), "DOUBLE PRECISION")]


class PostgreSQLConnection:
    """A PostgreSQL database (psycopg 3, autocommit between explicit transactions); a connection
    the server dropped is opened again by the next statement or transaction."""

    def __init__(self, uri: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise UserError(f"{redacted(uri)}: a PostgreSQL catalog needs psycopg: "
                            "pip install 'eqt-monitor[postgresql]'") from None
        self._psycopg = psycopg
        self.operational = (psycopg.OperationalError, psycopg.InterfaceError)
        self.uri, self.where = uri, redacted(uri)
        self._db = None
        self._connection()

    def _connection(self):
        if self._db is None or self._db.closed:
            self._db = self._psycopg.connect(self.uri, autocommit=True, row_factory=_row_factory,
                                             connect_timeout=10, application_name="eqt-monitor")
        return self._db

    def execute(self, sql: str, args: Sequence = ()):
        return self._connection().execute(_placeholders(sql), args)

    def execute_many(self, sql: str, rows: Iterable[Sequence]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        with self._connection().cursor() as cur:
            cur.executemany(_placeholders(sql), rows)
            return cur.rowcount

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        db = self._db
        if db is None or db.closed or db.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE:
            return
        try:
            db.execute("ROLLBACK")
        except self.operational:  # the connection is gone, and the transaction with it
            pass

    def ddl(self, statement: str) -> str:
        for pattern, replacement in _PG_TYPES:
            statement = pattern.sub(replacement, statement)
        return statement

    # PostgreSQL catalogs began at schema 3: the earlier steps rebuild tables the SQLite way (foreign
    # keys off, tables renamed under their references), which PostgreSQL's references by table do not allow
    first_version = 3

    @contextmanager
    def migrating(self):
        """Nothing to set: PostgreSQL checks foreign keys as each statement runs."""
        yield

    def foreign_key_problem(self) -> str | None:
        return None

    def lock_schema(self) -> None:
        """Serialise schema creation and migration between processes starting at once."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))

    def schema_version(self) -> int:
        # a query of the catalog table, not to_regclass(): its cached "no such table" survives another
        # session's commit until this one takes a table lock, so a process waiting at lock_schema() would
        # not see the schema just created
        if not self.execute("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() "
                            "AND tablename = ?", (VERSION_TABLE,)).fetchone()[0]:
            return 0
        row = self.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
        return 0 if row is None else row[0]

    def set_schema_version(self, version: int) -> None:
        self.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version BIGINT NOT NULL)")
        self.execute(f"DELETE FROM {VERSION_TABLE}")
        self.execute(f"INSERT INTO {VERSION_TABLE} VALUES (?)", (int(version),))

    def has_tables(self) -> bool:
        return self.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_schema = current_schema()").fetchone()[0] > 0

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _placeholders(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (the catalog's SQL has no ``?`` or ``%`` of its own)."""
    return sql.replace("%", "%%").replace("?", "%s")


def driver_error(exc: BaseException) -> str | None:
    """``"operational"`` when ``exc`` says the database is unreachable or refuses writes (a full disk,
    a missing folder, a server that is down), ``"unusable"`` for other database errors (not a
    database, a foreign one), else None."""
    psycopg = sys.modules.get("psycopg")
    if isinstance(exc, sqlite3.OperationalError) or (
            psycopg is not None and isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))):
        return "operational"
    if isinstance(exc, sqlite3.DatabaseError) or (psycopg is not None and isinstance(exc, psycopg.DatabaseError)):
        return "unusable"
    return None


def connect(target: str | Path) -> SQLiteConnection | PostgreSQLConnection:
    """Open the catalog database ``target`` (raises the driver's errors)."""
    return PostgreSQLConnection(target) if is_server(target) else SQLiteConnection(Path(target))
