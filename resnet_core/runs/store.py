"""The run store: one SQLite database (WAL) plus safetensors checkpoints in the data folder.

Every training process, the CLI and the app meet here. Each write is one transaction, so a reader
polling while a run writes sees whole rows or nothing; WAL lets readers go on while a writer commits.
The runs table doubles as the job queue: `create_runs` makes `queued` runs (refusing, in the same
transaction, a person's runs past their limit and any past the queue's bound) and `claim` atomically
moves one to `running` for one process (a cap on concurrent runs counts `running` rows in the same
transaction). A damaged row is reported by `damaged_runs` and skipped, never fatal to a reader.
The tables and the `Run` row are in `runs.schema`. No UI code here.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import RunLimitError, ServerFullError, StoreError, folder_full_error
from .schema import ENDED, METRIC_COLUMNS, MIGRATIONS, SCHEMA, SCHEMA_VERSION, DamagedRunError, Run
from .settings import resolve_home

logger = logging.getLogger(__name__)


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class Store:
    """The run store of one data folder. Not shared between threads: each thread opens its own."""

    def __init__(self, home: str | os.PathLike | None = None) -> None:
        self.home = resolve_home(home)
        self.path = self.home / "runs.sqlite"
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a power cut may lose the last commit
            self._db.execute("PRAGMA foreign_keys=ON")
            # A read decides: the app opens a store on every page poll (each Streamlit rerun is a new thread),
            # and the schema's write transaction would make every poll queue for the write lock.
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                with self._transaction():
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    columns = {row["name"] for row in self._db.execute("PRAGMA table_info(runs)")}
                    for column, statement in MIGRATIONS.items():
                        if column not in columns:
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"Cannot open the run store {self.path} ({error}); pass --home DIR for another data "
                             "folder.") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two writers queue instead of failing on upgrade.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite has already rolled back after some errors, e.g. a full disk
                self._db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------------------------ runs
    def create_run(self, *, name: str, spec: dict, recipe: dict, data: str, device: str, precision: str,
                   seed: int) -> int:
        """A new `queued` run; `claim` starts it."""
        return self.create_runs([dict(name=name, spec=spec, recipe=recipe, data=data, device=device,
                                      precision=precision, seed=seed)])[0]

    def create_runs(self, runs: list[dict], *, owner: str | None = None, per_owner: int | None = None,
                    max_waiting: int | None = None, cap: int = 1) -> list[int]:
        """Queue `runs` (dicts of create_run's arguments) all or none, for `owner` (None: no limits); their ids.

        The limits are `_check_room`'s; counting and inserting are one write transaction, so thirty people
        pressing Start at once cannot overshoot them.
        """
        with self._transaction() as db:
            self._check_room(db, len(runs), owner, per_owner, max_waiting, cap)
            ids = []
            for run in runs:
                cursor = db.execute(
                    "INSERT INTO runs (name, model, spec, recipe, data, device, precision, seed, status, created, "
                    "owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                    (run["name"], run["spec"]["name"], json.dumps(run["spec"]), json.dumps(run["recipe"]),
                     run["data"], run["device"], run["precision"], run["seed"], time.time(), owner))
                ids.append(cursor.lastrowid)
            return ids

    @staticmethod
    def _check_room(db: sqlite3.Connection, count: int, owner: str | None, per_owner: int | None,
                    max_waiting: int | None, cap: int) -> None:
        """Refuse `count` more active runs of `owner` with RunLimitError past `per_owner` queued or running, and
        with ServerFullError when more than `max_waiting` runs would wait for one of the `cap` slots."""
        if owner is None:  # the CLI's runs: whoever runs it owns the machine
            return
        if per_owner is not None:
            active = [row[0] for row in db.execute(
                "SELECT id FROM runs WHERE owner=? AND status IN ('queued', 'running') ORDER BY id", (owner,))]
            if len(active) + count > per_owner:
                listed = ", ".join(f"#{run_id}" for run_id in active)
                raise RunLimitError(
                    f"Each person may have {per_owner} runs queued or running at once and you have {len(active)}"
                    f"{f' ({listed})' if active else ''}, so {count} more cannot start; wait for one to finish or "
                    "cancel it.")
        if max_waiting is not None:
            pending = db.execute("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')").fetchone()[0]
            if pending + count - cap > max_waiting:
                raise ServerFullError(f"The server is full: {max(pending - cap, 0)} runs are already waiting for a "
                                      "free slot; try again in a few minutes.")

    def claim(self, run_id: int, pid: int) -> bool:
        """Move a queued run to running for process `pid`; False when another process got there first."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE runs SET status='running', pid=?, started=COALESCE(started, ?), ended=NULL, "
                                "error=NULL WHERE id=? AND status='queued'", (pid, time.time(), run_id))
            return cursor.rowcount == 1

    def requeue_for_resume(self, run_id: int, *, per_owner: int | None = None, max_waiting: int | None = None,
                           cap: int = 1) -> Run:
        """Put a stopped run back in the queue so it can be claimed again; refuses runs that cannot continue, and
        (`create_runs`'s limits) a run whose owner has no room for it."""
        with self._transaction() as db:
            run = self._run(db, run_id)
            if run.status == "finished":
                raise StoreError(f"Run {run_id} has finished; only cancelled, failed or killed runs can be resumed.")
            if run.status == "diverged":
                raise StoreError(f"Run {run_id} diverged ({run.error}); start a new run with a lower --lr instead.")
            if run.status == "running" and process_alive(run.pid) and run.pid != os.getpid():
                raise StoreError(f"Run {run_id} is still running in process {run.pid}; cancel it before resuming.")
            if run.status != "running":  # a running run whose process died is already counted
                self._check_room(db, 1, run.owner, per_owner, max_waiting, cap)
            db.execute("UPDATE runs SET status='queued', pid=NULL WHERE id=?", (run_id,))
            return run

    def finish(self, run_id: int, status: str, error: str | None = None) -> None:
        if status not in ENDED:
            raise ValueError(f"Unknown final status {status!r}; allowed: {', '.join(ENDED)}.")
        with self._transaction() as db:
            db.execute("UPDATE runs SET status=?, error=?, ended=? WHERE id=?", (status, error, time.time(), run_id))

    def run(self, run_id: int) -> Run:
        return self._run(self._db, run_id)

    @staticmethod
    def _run(db: sqlite3.Connection, run_id: int) -> Run:
        row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"No run {run_id!r} in this data folder; `python -m resnet_core runs` lists the runs.")
        return Run.from_row(row)

    def runs(self) -> list[Run]:
        """Every readable run, oldest first; `damaged_runs` reports the others."""
        return [run for run in self._read_all() if isinstance(run, Run)]

    def damaged_runs(self) -> dict[int, str]:
        """Run id -> why its row cannot be read."""
        return {error.id: str(error) for error in self._read_all() if isinstance(error, DamagedRunError)}

    def _read_all(self) -> list[Run | DamagedRunError]:
        return [self._read(row) for row in self._db.execute("SELECT * FROM runs ORDER BY id").fetchall()]

    @staticmethod
    def _read(row: sqlite3.Row) -> Run | DamagedRunError:
        try:
            return Run.from_row(row)
        except DamagedRunError as error:
            return error

    def count_running(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM runs WHERE status='running'").fetchone()[0]

    def summaries(self) -> list[dict]:
        """One dict per run with its latest training and test values (fractions, or None before the first)."""
        return [summary for _, summary in self.runs_and_summaries()]

    def runs_and_summaries(self) -> list[tuple[Run, dict]]:
        """Every run with its summary, both read in one snapshot: a run created or finishing meanwhile is either
        in both or in neither, and its status agrees with its latest values."""
        # One snapshot for all three queries, so a run that writes meanwhile cannot mix two moments.
        self._db.execute("BEGIN")
        try:
            runs = self.runs()
            latest = {}
            for row in self._db.execute(
                    "SELECT m.run_id, m.kind, m.iteration, m.error, m.loss FROM metrics m JOIN "
                    "(SELECT run_id, kind, MAX(iteration) AS iteration FROM metrics GROUP BY run_id, kind) last "
                    "USING (run_id, kind, iteration)"):
                latest[row["run_id"], row["kind"]] = row
        finally:
            self._db.execute("COMMIT")
        result = []
        for run in runs:
            train = latest.get((run.id, "train"))
            test = latest.get((run.id, "test")) or latest.get((run.id, "validation"))
            result.append((run, {
                "id": run.id, "name": run.name, "model": run.model, "data": run.data, "status": run.status,
                "iterations_done": train["iteration"] if train else 0,
                "iterations_total": run.recipe["iterations"],
                "train_error": train["error"] if train else None, "train_loss": train["loss"] if train else None,
                "test_error": test["error"] if test else None, "test_loss": test["loss"] if test else None,
                "device": run.device, "precision": run.precision, "seed": run.seed, "created": run.created,
                "started": run.started, "ended": run.ended, "error": run.error, "pid": run.pid,
            }))
        return result

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
        """Record a checkpoint already on disk, and delete all but the newest `keep`."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                       (run_id, iteration, str(path), time.time()))
            stale = db.execute("SELECT iteration, path FROM checkpoints WHERE run_id=? ORDER BY iteration DESC "
                               "LIMIT -1 OFFSET ?", (run_id, keep)).fetchall()
            db.executemany("DELETE FROM checkpoints WHERE run_id=? AND iteration=?",
                           [(run_id, row["iteration"]) for row in stale])
        for row in stale:  # after the commit: a crash in between leaves a stray file, never a dangling row
            if row["path"] != str(path):
                Path(row["path"]).unlink(missing_ok=True)

    def latest_checkpoint(self, run_id: int) -> tuple[int, Path] | None:
        row = self._db.execute("SELECT iteration, path FROM checkpoints WHERE run_id=? ORDER BY iteration DESC "
                               "LIMIT 1", (run_id,)).fetchone()
        return (row["iteration"], Path(row["path"])) if row else None

    # ------------------------------------------------------------------------------------ job queue
    def has_pending(self) -> bool:
        """Whether any run is queued or running: a read, so idle pollers never take the write lock."""
        pending = self._db.execute("SELECT 1 FROM runs WHERE status IN ('queued', 'running') LIMIT 1").fetchone()
        return pending is not None

    def start_queued(self, cap: int, launch: Callable[[Run], int], alive: Callable[[int | None], bool],
                     lost_reason: Callable[[Run], str]) -> list[int]:
        """Fail `running` runs whose process is gone, then start the oldest queued runs while fewer than `cap` run.

        `launch(run)` starts a process and returns its pid. Counting, choosing and marking happen in one write
        transaction, so callers racing in several processes never start more than `cap` runs between them.
        Returns the ids started.
        """
        started = []
        with self._transaction() as db:
            running = [self._read(row) for row in db.execute("SELECT * FROM runs WHERE status='running'").fetchall()]
            lost = [run for run in running if not alive(run.pid)]
            db.executemany("UPDATE runs SET status='failed', error=?, ended=? WHERE id=?",
                           [(lost_reason(run) if isinstance(run, Run) else str(run), time.time(), run.id)
                            for run in lost])
            free = cap - (len(running) - len(lost))
            for row in db.execute("SELECT * FROM runs WHERE status='queued' ORDER BY id").fetchall():
                if len(started) >= free:
                    break
                run, pid = self._read(row), None
                if isinstance(run, DamagedRunError):
                    reason = run
                else:
                    try:
                        pid = launch(run)
                    except Exception as error:  # e.g. a full disk for its log; the queue behind it must not stall
                        logger.warning("Run %s could not start.", run.id, exc_info=True)
                        reason = folder_full_error(error, self.home) or error
                if pid is None:
                    db.execute("UPDATE runs SET status='failed', error=?, ended=? WHERE id=?",
                               (f"It could not start: {reason}", time.time(), row["id"]))
                    continue
                db.execute("UPDATE runs SET status='running', pid=?, started=COALESCE(started, ?), ended=NULL, "
                           "error=NULL WHERE id=?", (pid, time.time(), run.id))
                started.append(run.id)
        return started

    def adopt(self, run_id: int, pid: int) -> bool:
        """Process `pid` takes the run a dispatcher started for it (or, should that dispatcher have rolled back,
        the still-queued run); False when the run belongs to another process or has ended."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE runs SET status='running', pid=?, started=COALESCE(started, ?), ended=NULL, "
                                "error=NULL WHERE id=? AND (status='queued' OR (status='running' AND pid=?))",
                                (pid, time.time(), run_id, pid))
            return cursor.rowcount == 1

    def queued_ids(self) -> list[int]:
        """Queued runs in the order they will start."""
        return [row[0] for row in self._db.execute("SELECT id FROM runs WHERE status='queued' ORDER BY id")]

    def cancel_queued(self, run_id: int) -> bool:
        """Cancel a run that has not started; False when it is no longer queued."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE runs SET status='cancelled', error='Cancelled before it started.', ended=? "
                                "WHERE id=? AND status='queued'", (time.time(), run_id))
            return cursor.rowcount == 1

    def delete_run(self, run_id: int) -> bool:
        """Forget a run that is not running, with its metrics and checkpoint rows (its files are the caller's);
        False when it is running."""
        with self._transaction() as db:
            return db.execute("DELETE FROM runs WHERE id=? AND status!='running'", (run_id,)).rowcount == 1
