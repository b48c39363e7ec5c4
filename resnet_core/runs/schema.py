"""What the run store holds: its tables, how an older store is brought up to date, and a run's row as a dataclass."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from ..errors import StoreError
from ..nets.specs import NetSpec
from ..training.recipe import Recipe

STATUSES = ("queued", "running", "finished", "failed", "cancelled", "diverged")
ENDED = ("finished", "failed", "cancelled", "diverged")
# One row per (run, iteration, kind); kind is "train", "test" or "validation".
METRIC_COLUMNS = ("iteration", "kind", "epoch", "loss", "error", "smoothed_loss", "smoothed_error", "lr",
                  "images_per_s", "elapsed_s", "eta_s")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    spec TEXT NOT NULL,        -- NetSpec.to_dict() as JSON
    recipe TEXT NOT NULL,      -- Recipe.to_dict() as JSON
    data TEXT NOT NULL,        -- dataset source: cifar10, cifar100, synthetic or a folder path
    device TEXT NOT NULL,
    precision TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled', 'diverged')),
    created REAL NOT NULL,     -- unix seconds
    started REAL,
    ended REAL,
    error TEXT,
    pid INTEGER,
    owner TEXT                 -- who started it from the app (a browser's hashed id), NULL from the CLI
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL,  -- optimizer steps done when measured
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
"""
# Columns added after the first release: an older store gains them when it is opened.
MIGRATIONS = {"owner": "ALTER TABLE runs ADD COLUMN owner TEXT"}
SCHEMA_VERSION = 2  # PRAGMA user_version of a store with SCHEMA and every migration; 0 before either


class DamagedRunError(StoreError):
    """A run's row that cannot be read back (e.g. its JSON was cut or edited by hand)."""

    def __init__(self, message: str, run_id: int, pid: int | None) -> None:
        super().__init__(message)
        self.id, self.pid = run_id, pid  # what the queue needs to fail a damaged run whose process died



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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Run":
        """The run of a row, its spec and recipe complete; DamagedRunError when they cannot be read."""
        values = dict(row)
        try:
            # Through the dataclasses and back, so a reader can rely on every field being there.
            values["spec"] = NetSpec.from_dict(json.loads(values["spec"])).to_dict()
            values["recipe"] = Recipe.from_dict(json.loads(values["recipe"])).to_dict()
        except (ValueError, TypeError, AttributeError) as error:  # bad JSON, a list, unknown or missing fields
            raise DamagedRunError(f"Run {values['id']}'s record in the store is damaged ({error}); the Runs page can "
                                  "delete it.", values["id"], values["pid"]) from None
        return cls(**values)

