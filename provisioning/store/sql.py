"""Driver-level (DBAPI) SQL for the hot paths, portable between SQLite and PostgreSQL.

The one home of SQL that bypasses SQLAlchemy's `Connection`; everything off the hot paths uses
the ORM or Core. Two shapes:

- ingestion writes (`Tx`, `transaction`, `Writer`, `run`): a 500-row insert through SQLAlchemy's
  compiled `insert().values(...)` costs more than the insert itself, so plain SQL with `?`
  placeholders is sent, rewritten once per dialect and cached;
- single-row reads on the token and bearer-check paths (`FastQuery`): a Core `select()` compiled
  once for the engine's dialect, run on a connection the calling thread keeps;
- the MQTT relay's reads (`SessionConnection`): one connection held for its session's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError


@lru_cache(maxsize=256)
def _for_dialect(template: str, paramstyle: str) -> str:
    # Our templates hold no literal '?' or '%', so a plain replace is safe.
    return template if paramstyle == "qmark" else template.replace("?", "%s")


@lru_cache(maxsize=64)
def values_insert(table: str, columns: tuple[str, ...], rows: int, suffix: str = "") -> str:
    """`INSERT INTO table (columns) VALUES (?, ...), ... <suffix>` for `rows` rows."""
    group = "(" + ", ".join("?" * len(columns)) + ")"
    # Table and column names are this package's constants, never input; values are parameters.
    names = ", ".join(columns)
    template = f"INSERT INTO {table} ({names}) VALUES {', '.join([group] * rows)}"  # noqa: S608
    return f"{template} {suffix}".rstrip()


@lru_cache(maxsize=64)
def _recordset_insert(table: str, columns: tuple[str, ...], suffix: str) -> str:
    # Names are this package's constants, never input; the rows are one bound JSON parameter.
    names = ", ".join(columns)
    picked = ", ".join(f"r.{name}" for name in columns)
    return (
        f"INSERT INTO {table} ({names}) SELECT {picked} FROM "  # noqa: S608
        f"json_populate_recordset(NULL::{table}, CAST(? AS json)) WITH ORDINALITY AS r "
        f"ORDER BY r.ordinality {suffix}"
    ).rstrip()


def insert_values(
    tx: Tx, table: str, columns: tuple[str, ...], params: Sequence[Any], suffix: str = ""
) -> list[tuple[Any, ...]]:
    """Insert the rows whose values `params` lists one row after another, in order, with one
    statement; the rows `suffix` (`ON CONFLICT ... RETURNING ...`) returns.

    On PostgreSQL the rows travel as one JSON parameter typed by the table's own row type:
    psycopg parses a statement of more than 50 parameters anew on every execution (its cache
    stops there), ~40 µs a reading for a 500-reading post, the most of its CPU (measured). On
    SQLite, a plain multi-row VALUES."""
    width = len(columns)
    if not tx.postgresql:
        return run(tx, values_insert(table, columns, len(params) // width, suffix), params)
    rows = [
        dict(zip(columns, params[at : at + width], strict=True))
        for at in range(0, len(params), width)
    ]
    return run(tx, _recordset_insert(table, columns, suffix), (orjson.dumps(rows).decode(),))


Done = TypeVar("Done")


class Tx:
    """A DBAPI connection inside a transaction, and what the hot path needs of its dialect."""

    __slots__ = ("dbapi", "paramstyle", "postgresql")

    def __init__(self, dbapi: Any, dialect: Dialect) -> None:
        self.dbapi = dbapi
        self.paramstyle: str = dialect.paramstyle
        self.postgresql = dialect.name == "postgresql"

    @classmethod
    def of(cls, conn: Connection) -> Tx:
        """The transaction `conn` is in (so Core code and the hot path can share one)."""
        return cls(conn.connection, conn.dialect)


@contextmanager
def transaction(engine: Engine) -> Iterator[Tx]:
    """One transaction on a pooled DBAPI connection: committed if the block succeeds, rolled
    back if it raises. Skips SQLAlchemy's `Connection`, whose bookkeeping costs more than a
    single-reading post's SQL does on SQLite."""
    raw = engine.raw_connection()
    try:
        yield Tx(raw, engine.dialect)
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()  # back to the pool


class Writer:
    """Transactions for the ingestion hot path.

    On SQLite the work is in-process, CPU-bound and one writer at a time anyway, so requests run
    it inline on the event loop, one after another, on one connection held for the app's life:
    the pool's checkout and reset-on-return would cost as much as a one-reading post's SQL.
    On PostgreSQL (`inline` False) each transaction takes a pooled connection, for callers in
    several threads; the ingest path writes there through one thread's `HeldConnection`
    instead (ingest/commit.py).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.inline = engine.dialect.name == "sqlite"
        self._held: Any = None

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A transaction: committed if the block succeeds, rolled back if it raises."""
        if not self.inline:
            with transaction(self._engine) as tx:
                yield tx
            return
        if self._held is None:
            self._held = self._engine.raw_connection()
        raw = self._held
        try:
            yield Tx(raw, self._engine.dialect)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise

    def run(self, work: Callable[[Tx], Done]) -> Done:
        """`work(tx)` in one transaction, committed if it returns; its result."""
        with self.transaction() as tx:
            return work(tx)

    def close(self) -> None:
        """Give the held connection back (app shutdown)."""
        if self._held is not None:
            self._held.close()
            self._held = None


def broken(raw: Any) -> bool:
    """Whether a pooled DBAPI connection can no longer be used (the server closed it: a restart,
    an administrator's kill), as opposed to a statement that failed on a sound connection."""
    driver = raw.driver_connection
    return bool(getattr(driver, "closed", False) or getattr(driver, "broken", False))


class HeldConnection:
    """Transactions on one pooled DBAPI connection that one thread keeps (a group commit's
    writer thread): no pool checkout, pre-ping and reset per transaction, each a round trip to
    PostgreSQL. A connection the server closed meanwhile (a restart) is found by the first
    statement, before anything is committed: it is dropped and the work runs once more on a
    fresh one, so the first transaction after the database is back succeeds."""

    def __init__(self, engine: Engine, read_only: bool = False) -> None:
        self._engine = engine
        self._raw: Any = None
        # A single read needs no transaction: on PostgreSQL autocommit spares the BEGIN and
        # COMMIT round trips around it (psycopg sends each on its own).
        self._autocommit = read_only and engine.dialect.name == "postgresql"
        # Uncontended but for the last group at shutdown, written from the loop's thread.
        self._lock = threading.Lock()

    def run(self, work: Callable[[Tx], Done]) -> Done:
        """`work(tx)` in one transaction, committed if it returns; its result."""
        with self._lock:
            return self._run(work)

    def _run(self, work: Callable[[Tx], Done]) -> Done:
        for attempt in (1, 2):
            if self._raw is None:
                self._raw = self._engine.raw_connection()
                if self._autocommit:
                    self._raw.driver_connection.autocommit = True
            raw = self._raw
            try:
                done = work(Tx(raw, self._engine.dialect))
            except Exception:
                if not broken(raw):
                    raw.rollback()
                    raise
                self._drop()
                if attempt == 2:
                    raise
                continue
            try:
                raw.commit()
            except Exception:
                # The commit's outcome is unknown: no retry, the connection is not reused.
                self._drop()
                raise
            return done
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.invalidate()

    def close(self) -> None:
        """Give the connection back (shutdown)."""
        with self._lock:
            raw, self._raw = self._raw, None
            if raw is not None:
                if self._autocommit:
                    raw.driver_connection.autocommit = False  # as the pool hands them out
                raw.close()


class SessionConnection:
    """One DBAPI connection kept for what lives as long as the database session (a
    session-level advisory lock): transactions are committed explicitly, and `close()` ends
    the session instead of handing the connection back to the pool, so its locks go with it.
    `errors` are the exceptions a use of it may raise (the driver's and SQLAlchemy's)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._raw: Any = None
        self.errors: tuple[type[BaseException], ...] = (
            engine.dialect.loaded_dbapi.Error,
            SQLAlchemyError,
        )

    def tx(self) -> Tx:
        """The connection, opened on first use, for statements until the next `commit()`."""
        if self._raw is None:
            self._raw = self._engine.raw_connection()
        return Tx(self._raw, self._engine.dialect)

    def commit(self) -> None:
        self._raw.commit()

    def close(self) -> None:
        """End the session (and its locks); the next `tx()` opens a new one."""
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.invalidate()  # not back to the pool: the session must end


def run(tx: Tx, template: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Execute `template` (with `?` placeholders) in `tx`; the rows, if it returns any."""
    cursor = tx.dbapi.cursor()
    try:
        cursor.execute(_for_dialect(template, tx.paramstyle), tuple(params))
        return list(cursor.fetchall()) if cursor.description else []
    finally:
        cursor.close()


def run_named(tx: Tx, template: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Execute a PostgreSQL-only `template` in psycopg's `%(name)s` style in `tx` (for a
    statement that uses one value in several places); its rows."""
    cursor = tx.dbapi.cursor()
    try:
        cursor.execute(template, params)
        return list(cursor.fetchall()) if cursor.description else []
    finally:
        cursor.close()


def ping(tx: Tx) -> None:
    """One round trip to the database: `SELECT 1`."""
    run(tx, "SELECT 1")


class FastQuery:
    """One SQL statement run straight on a DBAPI connection kept by the calling thread.

    For the single indexed SELECT on the token and bearer-check paths, SQLAlchemy's Connection
    wrapper and a pool checkout per call cost several times the query itself (~100 µs against
    ~15 µs, measured on SQLite). So each thread keeps one pooled connection, ends the read
    transaction after every query (fresh data next time; no idle transaction on PostgreSQL) and
    drops the connection if it fails. The statement is still built and compiled by SQLAlchemy
    for the engine's dialect, once.

    Call it from the event loop's thread (as the token endpoint and the async verifier do) or
    a few long-lived threads: a thread pool's workers would each hold a pooled connection.
    """

    def __init__(self, engine: Engine, statement: Select[*tuple[Any, ...]]) -> None:
        self._engine = engine
        compiled = statement.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._order = compiled.positiontup if compiled.positional else None
        self.columns = [str(column.key) for column in statement.selected_columns]
        self._local = threading.local()

    def first(self, **params: Any) -> dict[str, Any] | None:
        """The first row as a dict keyed by column name, or None."""
        args: Any = tuple(params[n] for n in self._order) if self._order is not None else params
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._engine.raw_connection()
            try:
                # Both drivers (sqlite3, psycopg 3) have Connection.execute returning a cursor.
                driver: Any = conn.driver_connection
                row = driver.execute(self._sql, args).fetchone()
                driver.rollback()
                break
            except Exception:
                # A connection broken by a database restart: drop it and try once more with a
                # fresh one (the pool's pre-ping does not see connections kept like this).
                self._local.conn = None
                conn.invalidate()
                if attempt == 2:
                    raise
        return None if row is None else dict(zip(self.columns, row, strict=True))
