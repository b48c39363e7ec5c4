"""What the run store holds: its tables, how an older store is brought up to date, and a run's row as a dataclass."""
from __future__ import annotations

import enum
import json
import logging
import sqlite3
from dataclasses import dataclass

from ..errors import StoreError
from ..nets.specs import NetSpec
from ..training.recipe import Recipe

logger = logging.getLogger(__name__)


class Status(enum.StrEnum):
    """A run's state; the runs table's CHECK is built from these, so SQL and Python cannot disagree."""

    QUEUED = "queued"
    STARTING = "starting"  # a dispatcher claimed its slot and is launching its process, which confirms it
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"  # its process died (killed, out of memory, a reboot); it can be resumed


STATUSES = tuple(Status)
ACTIVE = (Status.QUEUED, Status.STARTING, Status.RUNNING)  # counted against the cap and a person's limit
ENDED = (Status.FINISHED, Status.FAILED, Status.CANCELLED, Status.DIVERGED, Status.INTERRUPTED)
RESUMABLE = (Status.CANCELLED, Status.FAILED, Status.INTERRUPTED)


def sql_list(statuses) -> str:
    """`('queued', 'running')`, for an SQL IN."""
    return "(" + ", ".join(f"'{status}'" for status in statuses) + ")"


# One row per (run, iteration, kind); kind is "train", "test" or "validation".
METRIC_COLUMNS = ("iteration", "kind", "epoch", "loss", "error", "smoothed_loss", "smoothed_error", "lr",
                  "images_per_s", "elapsed_s", "eta_s")

RUN_COLUMNS = ("id", "name", "model", "spec", "recipe", "data", "device", "precision", "seed", "status", "created",
               "started", "ended", "error", "pid", "owner", "process_started", "claimed", "reference", "experiment")
RUNS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {{table}} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    spec TEXT NOT NULL,        -- NetSpec.to_dict() as JSON
    recipe TEXT NOT NULL,      -- Recipe.to_dict() as JSON
    data TEXT NOT NULL,        -- dataset source: cifar10, cifar100, synthetic or a folder path
    device TEXT NOT NULL,
    precision TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN {sql_list(STATUSES)}),
    created REAL NOT NULL,     -- unix seconds
    started REAL,
    ended REAL,
    error TEXT,
    pid INTEGER,
    owner TEXT,                -- who started it from the app (a browser's hashed id), NULL from the CLI
    process_started REAL,      -- the start time of process `pid`: a reused pid has another
    claimed REAL,              -- when a dispatcher made it `starting`
    reference TEXT,            -- the shipped reference net it is (read-only), NULL for a run trained here
    experiment TEXT            -- an experiment's kind and settings as JSON (explain.jobs), NULL for a training run
)"""
SCHEMA = RUNS_TABLE.format(table="runs") + """;
CREATE UNIQUE INDEX IF NOT EXISTS runs_reference ON runs(reference) WHERE reference IS NOT NULL;
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL,  -- optimizer steps done when measured
    kind TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL, error REAL, smoothed_loss REAL, smoothed_error REAL, lr REAL,
    images_per_s REAL, elapsed_s REAL, eta_s REAL,
    PRIMARY KEY (run_id, kind, iteration)
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,       -- an experiment's steps in the order it measures them
    payload TEXT NOT NULL,       -- JSON
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, iteration)
);
CREATE TABLE IF NOT EXISTS lesson (   -- one row while the teacher hands out Fig. 6's cells (runs.classroom)
    id INTEGER PRIMARY KEY CHECK (id = 1),
    iterations INTEGER,          -- each cell's length, NULL for the Train page's default
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    owner TEXT PRIMARY KEY,      -- a browser's hashed id, as runs.owner
    depth INTEGER NOT NULL,      -- the cell: plain and residual nets of this depth
    assigned REAL NOT NULL
);
"""
SCHEMA_VERSION = 6  # PRAGMA user_version of a store with SCHEMA; 0 before it, 2 before the Status enum, 3 before
# reference runs, 4 before experiments, 5 before the classroom's lesson and assignments


def create_or_migrate(db: sqlite3.Connection, path) -> None:
    """Create the tables of a new store, or bring an older one up to SCHEMA_VERSION, inside the caller's write
    transaction (foreign keys off)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it meanwhile
    if version >= SCHEMA_VERSION:
        return
    if db.execute("SELECT 1 FROM sqlite_master WHERE name='runs'").fetchone():
        logger.warning("Migrating the run store %s from version %s to %s.", path, version, SCHEMA_VERSION)
        migrate(db)
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def migrate(db: sqlite3.Connection) -> None:
    """Bring an older runs table up to SCHEMA inside the caller's write transaction (foreign keys off).

    SQLite cannot change a CHECK, so the table is copied into a new one: every run, with its metrics and checkpoints
    untouched. A run that died was stored as `failed` with a reason starting "Interrupted:" before `interrupted` was
    a status of its own; it becomes `interrupted`, keeping its reason.
    """
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


class DamagedRunError(StoreError):
    """A run's row that cannot be read back (e.g. its JSON was cut or edited by hand)."""

    def __init__(self, message: str, row: dict) -> None:
        super().__init__(message)
        # What the queue needs to fail a damaged run whose process died.
        self.id, self.status, self.pid, self.process_started = (row["id"], row["status"], row["pid"],
                                                                row.get("process_started"))


@dataclass(frozen=True)
class Run:
    id: int
    name: str
    model: str
    spec: dict
    recipe: dict
    data: str
    device: str
    precision: str
    seed: int
    status: str
    created: float
    started: float | None
    ended: float | None
    error: str | None
    pid: int | None
    owner: str | None = None
    process_started: float | None = None
    claimed: float | None = None
    reference: str | None = None
    experiment: dict | None = None  # {"kind": "lesion", …} for an experiment run

    def summary(self, train: sqlite3.Row | None, test: sqlite3.Row | None) -> dict:
        """The run with its latest training and `test` metric rows, as `python -m resnet_core runs --json` lists it."""
        return {
            "id": self.id, "name": self.name, "model": self.model, "data": self.data, "status": self.status,
            "iterations_done": train["iteration"] if train else 0, "iterations_total": self.recipe["iterations"],
            "train_error": train["error"] if train else None, "train_loss": train["loss"] if train else None,
            "test_error": test["error"] if test else None, "test_loss": test["loss"] if test else None,
            "device": self.device, "precision": self.precision, "seed": self.seed, "created": self.created,
            "started": self.started, "ended": self.ended, "error": self.error, "pid": self.pid}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Run":
        """The run of a row, its spec and recipe complete; DamagedRunError when they cannot be read."""
        values = dict(row)
        try:
            values["status"] = Status(values["status"])
            values["experiment"] = values["experiment"] and json.loads(values["experiment"])
            # Through the dataclasses and back, so a reader can rely on every field being there.
            values["spec"] = NetSpec.from_dict(json.loads(values["spec"])).to_dict()
            values["recipe"] = Recipe.from_dict(json.loads(values["recipe"])).to_dict()
        except (ValueError, TypeError, AttributeError) as error:  # bad JSON, a list, unknown fields or status
            raise DamagedRunError(f"Run {values['id']}'s record in the store is damaged ({error}); the Runs page can "
                                  "delete it.", values) from None
        return cls(**values)

