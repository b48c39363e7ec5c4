"""The database under the run store: an SQLite file in the data folder by default, PostgreSQL when
$RESNET_EXPLORER_DATABASE_URL names one; one SQLAlchemy engine per database and process, brought to the newest
schema by Alembic when first opened.

SQLite needs two things SQLAlchemy's driver does not do by itself: writers must take the write lock when they
begin (BEGIN IMMEDIATE), or two writers that both read first deadlock on upgrade; and foreign keys (the metrics of a
deleted run go with it) are off unless each connection switches them on. PostgreSQL's writers that count before they
insert (a person's limit, the cap) take one transaction-scoped advisory lock, which does for them what SQLite's
write lock does; claims also lock the queued rows they take with SKIP LOCKED, so a cancel holding a row is passed by.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url

from ..errors import StoreError, StoreUnavailableError
from .settings import database_url, shared_checkpoint_folder

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# The key of PostgreSQL's advisory lock that queue writes and migrations take (any constant of this project's own).
QUEUE_LOCK = 7_215_360_052
DISPATCHER_LOCK = 7_215_360_053  # held by the deployment's one dispatcher process for its lifetime
_engines: dict[str, Engine] = {}
_current: set[str] = set()  # databases this process has seen at the newest schema: checked once, not every poll
_lock = threading.Lock()


def store_url(home: Path) -> str:
    """The database of the data folder `home`: $RESNET_EXPLORER_DATABASE_URL, else `home`/runs.sqlite."""
    return database_url() or f"sqlite:///{home / 'runs.sqlite'}"


def describe(url: str) -> str:
    """The database for a message, without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


def engine_for(url: str) -> Engine:
    """This process's engine of `url`, created and migrated to the newest schema on first use."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create(url)
    if url not in _current:
        from .migrate import upgrade  # Alembic is imported only by a process that opens a database first

        upgrade(engine)
        _current.add(url)
    return engine


def _create(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # timeout: a writer waits up to 30 s for the write lock rather than failing at once.
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise StoreError(f"The database URL {describe(url)} names the driver {parsed.get_driver_name()!r}; use "
                             "postgresql+psycopg://USER@HOST/DATABASE (psycopg 3).")
        # pre_ping: a connection the server dropped (a restart) is replaced instead of failing the next write.
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=20)
    raise StoreError(f"The database URL {describe(url)} is neither SQLite nor PostgreSQL; set "
                     "RESNET_EXPLORER_DATABASE_URL to postgresql+psycopg://USER@HOST/DATABASE, or unset it for the "
                     "data folder's SQLite file.")


def _sqlite_connect(connection: sqlite3.Connection, _record) -> None:
    connection.isolation_level = None  # SQLAlchemy's "begin" event below says how each transaction begins
    connection.execute("PRAGMA journal_mode=WAL")  # readers go on while a writer commits
    connection.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a power cut may lose the last commit
    connection.execute("PRAGMA foreign_keys=ON")


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get("write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def keeps_checkpoints(engine: Engine) -> bool:
    """Whether checkpoints travel in this database: PostgreSQL with no folder every machine mounts."""
    return is_postgresql(engine) and shared_checkpoint_folder() is None


@contextmanager
def write(engine: Engine, *, queue: bool = True) -> Iterator[Connection]:
    """One short write transaction. `queue`: it counts rows before it changes them (limits, the cap, a cell handed
    out), so writers of this kind take turns on PostgreSQL as they always do on SQLite."""
    with unavailable_as_error(engine), engine.connect() as connection:
        connection.execution_options(write=True)
        with connection.begin():
            if queue and is_postgresql(engine):
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_LOCK})
            yield connection


@contextmanager
def read(engine: Engine, *, snapshot: bool = False) -> Iterator[Connection]:
    """A read that takes no write lock. `snapshot`: several queries see one moment (SQLite's deferred transaction
    in WAL mode, PostgreSQL's REPEATABLE READ), so a run finishing meanwhile is in all of them or none."""
    with unavailable_as_error(engine), engine.connect() as connection:
        if snapshot and is_postgresql(engine):
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


@contextmanager
def unavailable_as_error(engine: Engine) -> Iterator[None]:
    """A PostgreSQL server that cannot be reached (down, restarting) raises StoreUnavailableError, which writers may
    retry; everything else, e.g. a full SQLite disk, passes unchanged."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        if not is_postgresql(engine):
            raise
        raise StoreUnavailableError(f"The database {describe(engine.url.render_as_string())} "
                                    f"cannot be reached ({str(error.orig).strip().splitlines()[0]}).") from error


def insert(connection: Connection, table, rows: list[dict], *, replace: bool) -> None:
    """INSERT `rows`; a row whose key is taken replaces it (`replace`) or is skipped: writing the same rows twice
    (a retried write, `db copy` run again) leaves one copy, on either database."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(table)
    keys = [column.name for column in table.primary_key.columns]
    if replace:
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={name: statement.excluded[name] for name in rows[0] if name not in keys})
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    connection.execute(statement, rows)


@contextmanager
def session_lock(engine: Engine, key: int, sqlite_file) -> Iterator[bool]:
    """Hold a lock for as long as the block runs, without waiting: yields whether this process got it. PostgreSQL's
    session advisory lock `key` (every machine of a deployment sees it; the server drops it with a dead session), or
    an flock on `sqlite_file` beside an SQLite store (the processes of one machine)."""
    if not is_postgresql(engine):
        import fcntl

        with open(sqlite_file, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        return
    with unavailable_as_error(engine), engine.connect() as connection:
        got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one()
        connection.commit()
        try:
            yield got
        finally:
            if got:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
