"""What runs record as they go, in the run store: metric rows, checkpoints (files in the run's folder, rows here),
and an experiment's results. A mixin of `runs.store.Store`, which opens the connection and the transactions."""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable, Iterable

from .schema import METRIC_COLUMNS


class RecordedData:
    # Store's: the data folder, its connection, and its write transactions.
    home: Path
    _db: sqlite3.Connection
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    # ------------------------------------------------------------------------------------ metrics
    def add_metrics(self, run_id: int, rows: Iterable[dict]) -> None:
        """Append metric rows (dicts with METRIC_COLUMNS) in one transaction."""
        values = [(run_id, *(row.get(column) for column in METRIC_COLUMNS)) for row in rows]
        if not values:
            return
        placeholders = ", ".join("?" * (len(METRIC_COLUMNS) + 1))
        with self._transaction() as db:
            db.executemany(f"INSERT OR REPLACE INTO metrics (run_id, {', '.join(METRIC_COLUMNS)}) "
                           f"VALUES ({placeholders})", values)

    def metrics(self, run_id: int, kind: str | None = None, after_iteration: int = -1) -> list[dict]:
        """Metric rows in iteration order; `after_iteration` lets a poller fetch only what is new."""
        query = f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE run_id=? AND iteration>?"
        params: tuple = (run_id, after_iteration)
        if kind is not None:
            query += " AND kind=?"
            params += (kind,)
        return [dict(row) for row in self._db.execute(query + " ORDER BY iteration, kind", params)]

    def truncate_metrics(self, run_id: int, after_iteration: int) -> None:
        """Forget what a killed run recorded after its last checkpoint; the resumed run records it again."""
        with self._transaction() as db:
            db.execute("DELETE FROM metrics WHERE run_id=? AND iteration>?", (run_id, after_iteration))

    # ------------------------------------------------------------------------------------ checkpoints
    def run_dir(self, run_id: int) -> Path:
        return self.home / "runs" / str(run_id)

    def add_checkpoint(self, run_id: int, iteration: int, path: Path, keep: int = 1) -> None:
        """Record a checkpoint already on disk in the run's folder, and delete all but the newest `keep`.

        The table keeps the file's name; it is read back under `run_dir` of this store's home, so a data folder that
        was moved or copied keeps its runs (rows written before hold absolute paths: only their name counts)."""
        if path.parent.resolve() != self.run_dir(run_id).resolve():
            raise ValueError(f"A checkpoint of run {run_id} belongs in {self.run_dir(run_id)}, not {path.parent}.")
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                       (run_id, iteration, path.name, time.time()))
            stale = db.execute("SELECT iteration, path FROM checkpoints WHERE run_id=? ORDER BY iteration DESC "
                               "LIMIT -1 OFFSET ?", (run_id, keep)).fetchall()
            db.executemany("DELETE FROM checkpoints WHERE run_id=? AND iteration=?",
                           [(run_id, row["iteration"]) for row in stale])
        for row in stale:  # after the commit: a crash in between leaves a stray file, never a dangling row
            if Path(row["path"]).name != path.name:
                self._checkpoint_file(run_id, row["path"]).unlink(missing_ok=True)

    def latest_checkpoint(self, run_id: int) -> tuple[int, Path] | None:
        row = self._db.execute("SELECT iteration, path FROM checkpoints WHERE run_id=? ORDER BY iteration DESC "
                               "LIMIT 1", (run_id,)).fetchone()
        return (row["iteration"], self._checkpoint_file(run_id, row["path"])) if row else None

    def _checkpoint_file(self, run_id: int, recorded: str) -> Path:
        return self.run_dir(run_id) / Path(recorded).name

    # ------------------------------------------------------------------------------------ experiment results
    def add_result(self, run_id: int, step: int, payload: dict) -> None:
        """Record step `step` of an experiment run (one deleted block, one row of a surface) as it is measured."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (run_id, step, json.dumps(payload)))

    def results(self, run_id: int) -> list[dict]:
        """An experiment run's results so far, in step order."""
        return [json.loads(row[0]) for row in
                self._db.execute("SELECT payload FROM results WHERE run_id=? ORDER BY step", (run_id,))]

    def clear_results(self, run_id: int) -> None:
        """Forget an experiment's results: a resumed experiment measures again from its first step."""
        with self._transaction() as db:
            db.execute("DELETE FROM results WHERE run_id=?", (run_id,))
