"""Run stores written before the store moved to SQLAlchemy and Alembic: SQLite files whose `PRAGMA user_version`
counted their schema (0 to 6). Version 6 is Alembic's first revision as it stood; an older file is first brought up
to it here, with the plain sqlite3 module that wrote it, and then handed to Alembic (`runs.migrate`).
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from ..errors import StoreError
from .schema import STATUSES, Status, sql_list

logger = logging.getLogger(__name__)

LAST_VERSION = 6  # the user_version of the last store before Alembic: revision 0001 describes it
RUN_COLUMNS = ("id", "name", "model", "spec", "recipe", "data", "device", "precision", "seed", "status", "created",
               "started", "ended", "error", "pid", "owner", "process_started", "claimed", "reference", "experiment")
RUNS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {{table}} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    spec TEXT NOT NULL,
    recipe TEXT NOT NULL,
    data TEXT NOT NULL,
    device TEXT NOT NULL,
    precision TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN {sql_list(STATUSES)}),
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    error TEXT,
    pid INTEGER,
    owner TEXT,
    process_started REAL,
    claimed REAL,
    reference TEXT,
    experiment TEXT
)"""
# Version 6's other tables, for a store of version 5 or older that lacks some of them.
OTHER_TABLES = """
CREATE UNIQUE INDEX IF NOT EXISTS runs_reference ON runs(reference) WHERE reference IS NOT NULL;
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL,
    kind TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL, error REAL, smoothed_loss REAL, smoothed_error REAL, lr REAL,
    images_per_s REAL, elapsed_s REAL, eta_s REAL,
    PRIMARY KEY (run_id, kind, iteration)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, iteration)
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS lesson (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    iterations INTEGER,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    owner TEXT PRIMARY KEY,
    depth INTEGER NOT NULL,
    assigned REAL NOT NULL
);
"""


def bring_to_last_version(path: Path) -> None:
    """Bring an SQLite store older than version 6 up to it, in one write transaction; nothing for a newer or new
    one. SQLite cannot change a CHECK, so the runs table is copied into a new one: every run, with its metrics and
    checkpoints untouched. A run that died was stored as `failed` with a reason starting "Interrupted:" before
    `interrupted` was a status of its own; it becomes `interrupted`, keeping its reason."""
    if not path.exists():
        return
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        if not _before_alembic(db):  # a read: every poll opens a store
            return
        db.execute("PRAGMA foreign_keys=OFF")  # cannot be switched inside a transaction; off, runs can be copied
        db.execute("BEGIN IMMEDIATE")
        try:
            if _before_alembic(db):  # another process may have done it meanwhile
                version = db.execute("PRAGMA user_version").fetchone()[0]
                logger.warning("Migrating the run store %s from version %s to %s.", path, version, LAST_VERSION)
                _copy_runs(db)
                for statement in OTHER_TABLES.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={LAST_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    finally:
        db.close()


def _before_alembic(db: sqlite3.Connection) -> bool:
    """Whether this is a store of the old schema below version 6: Alembic's stores leave user_version at 0."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return ("runs" in tables and "alembic_version" not in tables
            and db.execute("PRAGMA user_version").fetchone()[0] < LAST_VERSION)


def _copy_runs(db: sqlite3.Connection) -> None:
    old = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    kept = [column for column in RUN_COLUMNS if column in old]  # the others came later and start empty
    db.execute(RUNS_TABLE.format(table="runs_migrated"))
    db.execute(f"INSERT INTO runs_migrated ({', '.join(kept)}) SELECT {', '.join(kept)} FROM runs")
    db.execute(f"UPDATE runs_migrated SET status='{Status.INTERRUPTED}' "
               f"WHERE status='{Status.FAILED}' AND error LIKE 'Interrupted:%'")
    db.execute("DROP TABLE runs")
    db.execute("ALTER TABLE runs_migrated RENAME TO runs")
    problems = db.execute("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise StoreError(f"The run store's migration would orphan {len(problems)} rows; it was not changed.")
