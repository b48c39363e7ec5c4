"""The run store: one SQLite database (WAL) plus safetensors checkpoints in the data folder.

Every training process, the CLI and the app meet here. Each write is one short transaction, so a reader polling
while a run writes sees whole rows or nothing; WAL lets readers go on while a writer commits. The runs table is
also the job queue's state (`runs.queue` decides what happens): `create_runs` makes `queued` runs (refusing, in
the same transaction, a person's runs past their limit and any past the queue's bound), `claim_slots` moves the
oldest to `starting` while fewer than the cap are busy, `launched` records the process a dispatcher started for
one, and that process `confirm`s it as `running`. Nothing here starts a process or waits on one, so the write lock
is never held for longer than a few statements. A damaged row is reported by `damaged_runs` and skipped, never
fatal to a reader. The tables, the statuses and the `Run` row are in `runs.schema`; what runs record is in
`runs.recorded` and a workshop's cells in `runs.classroom`. No UI code here.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, NamedTuple

from ..errors import RunLimitError, ServerFullError, StoreError
from . import processes
from .schema import (ACTIVE, ENDED, METRIC_COLUMNS, RESUMABLE, SCHEMA_VERSION, DamagedRunError, Run, Status,
                     create_or_migrate, sql_list)
from .classroom import ClassroomData
from .recorded import RecordedData
from .settings import resolve_home

logger = logging.getLogger(__name__)
BUSY = sql_list((Status.STARTING, Status.RUNNING))  # runs that hold one of the cap's slots


class Verdict(NamedTuple):
    """A change a dispatcher decided from what it read: run `id`, still `status` with process `pid`, becomes
    `new_status` (with `error`). Applied only if the run has not changed meanwhile."""

    id: int
    status: str
    pid: int | None
    new_status: str
    error: str | None = None


class Store(RecordedData, ClassroomData):
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
                # Foreign keys cannot be switched inside a transaction; off, the runs table can be copied.
                self._db.execute("PRAGMA foreign_keys=OFF")
                try:
                    with self._transaction() as db:
                        create_or_migrate(db, self.path)
                finally:
                    self._db.execute("PRAGMA foreign_keys=ON")
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
                    max_waiting: int | None = None, cap: int = 1, taken_by: int | None = None) -> list[int]:
        """Queue `runs` (dicts of create_run's arguments) all or none, for `owner` (None: no limits); their ids.

        The limits are `_check_room`'s; counting and inserting are one write transaction, so thirty people
        pressing Start at once cannot overshoot them. `taken_by`: the pid of the process that trains them itself
        (the CLI in the foreground); they are recorded running for it in the same transaction, so no dispatcher
        can start them in between.
        """
        with self._transaction() as db:
            self._check_room(db, len(runs), owner, per_owner, max_waiting, cap)
            ids = []
            for run in runs:
                experiment = run.get("experiment")
                cursor = db.execute(
                    "INSERT INTO runs (name, model, spec, recipe, data, device, precision, seed, status, created, "
                    f"owner, experiment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{Status.QUEUED}', ?, ?, ?)",
                    (run["name"], run["spec"]["name"], json.dumps(run["spec"]), json.dumps(run["recipe"]),
                     run["data"], run["device"], run["precision"], run["seed"], time.time(), owner,
                     experiment and json.dumps(experiment)))
                ids.append(cursor.lastrowid)
                if taken_by is not None:
                    self._take(db, cursor.lastrowid, taken_by, "1")
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
                f"SELECT id FROM runs WHERE owner=? AND status IN {sql_list(ACTIVE)} ORDER BY id", (owner,))]
            if len(active) + count > per_owner:
                listed = ", ".join(f"#{run_id}" for run_id in active)
                raise RunLimitError(
                    f"Each person may have {per_owner} runs queued or running at once and you have {len(active)}"
                    f"{f' ({listed})' if active else ''}, so {count} more cannot start; wait for one to finish or "
                    "cancel it.")
        if max_waiting is not None:
            pending = db.execute(f"SELECT COUNT(*) FROM runs WHERE status IN {sql_list(ACTIVE)}").fetchone()[0]
            if pending + count - cap > max_waiting:
                raise ServerFullError(f"The server is full: {max(pending - cap, 0)} runs are already waiting for a "
                                      "free slot; try again in a few minutes.")

    def claim(self, run_id: int, pid: int) -> bool:
        """Process `pid` takes a queued run itself (the CLI training in the foreground), past the queue and its cap;
        False when another process got there first."""
        return self._set_running(run_id, pid, f"status='{Status.QUEUED}'")

    def confirm(self, run_id: int, pid: int) -> bool:
        """Process `pid` confirms the run a dispatcher launched it for (or takes a queued run, as `claim`); False
        when the run was cancelled meanwhile, has ended, or belongs to another process."""
        return self._set_running(run_id, pid, f"(status='{Status.QUEUED}' OR (status='{Status.STARTING}' AND "
                                              f"(pid IS NULL OR pid=:pid)) OR (status='{Status.RUNNING}' AND pid=:pid))")

    def _set_running(self, run_id: int, pid: int, condition: str) -> bool:
        with self._transaction() as db:
            return self._take(db, run_id, pid, condition)

    @staticmethod
    def _take(db: sqlite3.Connection, run_id: int, pid: int, condition: str) -> bool:
        """Within a write transaction: run `run_id` is running in process `pid` if it meets SQL `condition`."""
        values = dict(pid=pid, process_started=processes.start_time(pid), now=time.time(), id=run_id)
        cursor = db.execute(
            f"UPDATE runs SET status='{Status.RUNNING}', pid=:pid, process_started=:process_started, "
            f"started=COALESCE(started, :now), ended=NULL, error=NULL, claimed=NULL WHERE id=:id AND {condition}",
            values)
        return cursor.rowcount == 1

    def requeue_for_resume(self, run_id: int, *, per_owner: int | None = None, max_waiting: int | None = None,
                           cap: int = 1, taken_by: int | None = None) -> Run:
        """Put a stopped run back in the queue so it can be claimed again (or, `taken_by`, running for that process);
        refuses runs that cannot continue, and (`create_runs`'s limits) a run whose owner has no room for it."""
        with self._transaction() as db:
            run = self._run(db, run_id)
            if run.status == Status.FINISHED:
                raise StoreError(f"Run {run_id} has finished; only cancelled, failed or interrupted runs can be "
                                 "resumed.")
            if run.status == Status.DIVERGED:
                raise StoreError(f"Run {run_id} diverged ({run.error}); start a new run with a lower --lr instead.")
            if run.status == Status.QUEUED:
                raise StoreError(f"Run {run_id} is already queued.")
            busy = run.status in (Status.STARTING, Status.RUNNING)
            if busy and processes.running(run.pid, run.process_started) and run.pid != os.getpid():
                raise StoreError(f"Run {run_id} is still running in process {run.pid}; cancel it before resuming.")
            if run.status in RESUMABLE:  # a busy run whose process died is already counted
                self._check_room(db, 1, run.owner, per_owner, max_waiting, cap)
            if taken_by is not None:  # `create_runs`'s: running for that process at once, never seen queued
                self._take(db, run_id, taken_by, "1")
            else:
                db.execute(f"UPDATE runs SET status='{Status.QUEUED}', pid=NULL, process_started=NULL, claimed=NULL "
                           "WHERE id=?", (run_id,))
            return run

    def finish(self, run_id: int, status: str, error: str | None = None) -> None:
        if status not in ENDED:
            raise ValueError(f"Unknown final status {status!r}; allowed: {', '.join(ENDED)}.")
        with self._transaction() as db:
            db.execute("UPDATE runs SET status=?, error=?, ended=? WHERE id=?", (status, error, time.time(), run_id))

    def add_reference(self, run_id: int, reference: str, *, name: str, spec: dict, recipe: dict, data: str,
                      precision: str, metrics: list[dict], trained_at: float, wall_s: float | None) -> None:
        """Record a shipped reference net as the finished, read-only run `run_id` (negative: ids from 1 up stay the
        runs trained here) with its whole history; nothing when it is already here."""
        if run_id >= 0:
            raise ValueError(f"A reference run's id is negative; got {run_id}.")
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE id=? OR reference=?", (run_id, reference)).fetchone():
                return
            db.execute(
                "INSERT INTO runs (id, name, model, spec, recipe, data, device, precision, seed, status, created, "
                f"started, ended, reference) VALUES (?, ?, ?, ?, ?, ?, 'cpu', ?, 0, '{Status.FINISHED}', ?, ?, ?, ?)",
                (run_id, name, spec["name"], json.dumps(spec), json.dumps(recipe), data, precision, trained_at,
                 trained_at, trained_at + (wall_s or 0), reference))
            placeholders = ", ".join("?" * (len(METRIC_COLUMNS) + 1))
            db.executemany(f"INSERT INTO metrics (run_id, {', '.join(METRIC_COLUMNS)}) VALUES ({placeholders})",
                           [(run_id, *(row.get(column) for column in METRIC_COLUMNS)) for row in metrics])

    def reference_of(self, run_id: int) -> str | None:
        """The reference net run `run_id` is, or None; read without parsing the row, so a damaged run answers."""
        row = self._db.execute("SELECT reference FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"No run {run_id!r} in this data folder; `python -m resnet_core runs` lists the runs.")
        return row[0]

    def run(self, run_id: int) -> Run:
        return self._run(self._db, run_id)

    @staticmethod
    def _run(db: sqlite3.Connection, run_id: int) -> Run:
        row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"No run {run_id!r} in this data folder; `python -m resnet_core runs` lists the runs.")
        return Run.from_row(row)

    def runs(self, *, references: bool = False) -> list[Run]:
        """Every readable training run (with `references`, the shipped reference runs first), oldest first;
        `damaged_runs` reports the others."""
        where = "experiment IS NULL" + ("" if references else " AND reference IS NULL")
        return [run for run in self._read_all(where) if isinstance(run, Run)]

    def experiments(self) -> list[Run]:
        """Every readable experiment run (explain.jobs), oldest first."""
        return [run for run in self._read_all("experiment IS NOT NULL") if isinstance(run, Run)]

    def damaged_runs(self) -> dict[int, str]:
        """Run id -> why its row cannot be read."""
        return {error.id: str(error) for error in self._read_all("1") if isinstance(error, DamagedRunError)}

    def _read_all(self, where: str) -> list[Run | DamagedRunError]:
        return [self._read(row) for row in self._db.execute(f"SELECT * FROM runs WHERE {where} ORDER BY id")]

    @staticmethod
    def _read(row: sqlite3.Row) -> Run | DamagedRunError:
        try:
            return Run.from_row(row)
        except DamagedRunError as error:
            return error

    def count_running(self) -> int:
        """Runs holding a slot: running, or starting."""
        return self._db.execute(f"SELECT COUNT(*) FROM runs WHERE status IN {BUSY}").fetchone()[0]

    def summaries(self) -> list[dict]:  # of the runs trained here
        """One dict per run with its latest training and test values (fractions, or None before the first)."""
        return [summary for _, summary in self.runs_and_summaries()]

    def runs_and_summaries(self, *, references: bool = False) -> list[tuple[Run, dict]]:
        """Every run with its summary, both read in one snapshot: a run created or finishing meanwhile is either
        in both or in neither, and its status agrees with its latest values."""
        # One snapshot for all three queries, so a run that writes meanwhile cannot mix two moments.
        self._db.execute("BEGIN")
        try:
            runs = self.runs(references=references)
            latest = {}
            for row in self._db.execute(
                    "SELECT m.run_id, m.kind, m.iteration, m.error, m.loss FROM metrics m JOIN "
                    "(SELECT run_id, kind, MAX(iteration) AS iteration FROM metrics GROUP BY run_id, kind) last "
                    "USING (run_id, kind, iteration)"):
                latest[row["run_id"], row["kind"]] = row
        finally:
            self._db.execute("COMMIT")
        return [(run, run.summary(latest.get((run.id, "train")),
                                  latest.get((run.id, "test")) or latest.get((run.id, "validation")))) for run in runs]

    # ------------------------------------------------------------------------------------ job queue
    def active_runs(self) -> list[Run | DamagedRunError]:
        """Queued, starting and running runs, oldest first (damaged ones as their errors): a read."""
        return [self._read(row) for row in self._db.execute(
            f"SELECT * FROM runs WHERE status IN {sql_list(ACTIVE)} ORDER BY id").fetchall()]

    def claim_slots(self, cap: int, verdicts: Iterable[Verdict] = ()) -> list[Run]:
        """Apply `verdicts` (each only if its run is unchanged), then move the oldest queued runs to `starting`
        while fewer than `cap` are busy; the runs claimed, for the caller to launch after this commits.

        One short write transaction: callers racing in several processes never claim more than `cap` between them.
        A damaged queued run fails instead of being claimed.
        """
        now = time.time()
        claimed = []
        with self._transaction() as db:
            for verdict in verdicts:
                ended = now if verdict.new_status in ENDED else None
                pid = None if verdict.new_status == Status.QUEUED else verdict.pid
                db.execute("UPDATE runs SET status=?, error=?, ended=?, pid=?, claimed=NULL WHERE id=? AND status=? "
                           "AND pid IS ?", (verdict.new_status, verdict.error, ended, pid, verdict.id,
                                            verdict.status, verdict.pid))
            free = cap - db.execute(f"SELECT COUNT(*) FROM runs WHERE status IN {BUSY}").fetchone()[0]
            for row in db.execute(f"SELECT * FROM runs WHERE status='{Status.QUEUED}' ORDER BY id").fetchall():
                if len(claimed) >= free:
                    break
                run = self._read(row)
                if isinstance(run, DamagedRunError):
                    db.execute(f"UPDATE runs SET status='{Status.FAILED}', error=?, ended=? WHERE id=?",
                               (f"It could not start: {run}", now, run.id))
                    continue
                db.execute(f"UPDATE runs SET status='{Status.STARTING}', pid=NULL, process_started=NULL, claimed=? "
                           "WHERE id=?", (now, run.id))
                claimed.append(run)
        return claimed

    def launched(self, run_id: int, pid: int, process_started: float | None) -> None:
        """Record the process a dispatcher started for a `starting` run (unless that process confirmed it first)."""
        with self._transaction() as db:
            db.execute(f"UPDATE runs SET pid=?, process_started=? WHERE id=? AND status='{Status.STARTING}' "
                       "AND pid IS NULL", (pid, process_started, run_id))

    def fail_start(self, run_id: int, error: str) -> None:
        """A `starting` run whose process could not be launched fails with `error`."""
        with self._transaction() as db:
            db.execute(f"UPDATE runs SET status='{Status.FAILED}', error=?, ended=? WHERE id=? "
                       f"AND status='{Status.STARTING}'", (error, time.time(), run_id))

    def queued_ids(self) -> list[int]:
        """Queued runs in the order they will start."""
        return [row[0] for row in self._db.execute(f"SELECT id FROM runs WHERE status='{Status.QUEUED}' ORDER BY id")]

    def cancel_queued(self, run_id: int) -> bool:
        """Cancel a run that has not started (queued, or starting: its process then finds it cancelled and
        exits); False when it is already running or has ended."""
        with self._transaction() as db:
            cursor = db.execute(f"UPDATE runs SET status='{Status.CANCELLED}', error='Cancelled before it started.', "
                                f"ended=? WHERE id=? AND status IN {sql_list((Status.QUEUED, Status.STARTING))}",
                                (time.time(), run_id))
            return cursor.rowcount == 1

    def delete_run(self, run_id: int) -> bool:
        """Forget a run that is not busy, with its metrics and checkpoint rows (its files are the caller's);
        False when it is starting or running, or a reference."""
        with self._transaction() as db:
            return db.execute(f"DELETE FROM runs WHERE id=? AND status NOT IN {BUSY} AND reference IS NULL",
                              (run_id,)).rowcount == 1
