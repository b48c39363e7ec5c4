"""The run store: every table of runs, their metrics, results and checkpoints, in one database (`runs.database`:
the data folder's SQLite file by default, PostgreSQL when $RESNET_EXPLORER_DATABASE_URL names one).

Every process that executes or watches a run meets here, on any machine that reaches the database. Each write is one
short transaction, so a reader polling while a run writes sees whole rows or nothing. The runs table is also the job
queue's state (`runs.dispatch` decides what happens): `create_runs` makes `queued` runs (refusing, in the same
transaction, a person's runs past their limit and any past the queue's bound), `claim_slots` moves the oldest to
`starting` while fewer than the cap are busy, `launched` records the process a dispatcher started for one, and that
process `confirm`s it as `running` and then renews its lease (`renew_lease`) while it executes: a job whose lease
lapsed reads as `interrupted` to every reader (`schema.Run`). Nothing here starts a process or waits on one, so no
write lock is held for longer than a few statements. A damaged row is reported by `damaged_runs` and skipped, never
fatal to a reader. The tables, the statuses and the `Run` row are in `runs.schema`; what runs record is in
`runs.recorded` and a workshop's cells in `runs.classroom`. No UI code here.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from typing import Iterable, NamedTuple

from sqlalchemy import Connection, and_, exc, func, or_, select, text, true

from ..errors import RunLimitError, ServerFullError, StoreError
from . import processes
from .classroom import ClassroomData
from .database import describe, engine_for, keeps_checkpoints, read, store_url, write
from .recorded import RecordedData
from .schema import (ACTIVE, ENDED, METRIC_COLUMNS, RESUMABLE, TRAINING_KINDS, DamagedRunError, Run, Status,
                     metrics_table, nodes_table, runs_table)
from .settings import resolve_home, shared_checkpoint_folder, this_node

logger = logging.getLogger(__name__)
BUSY = (Status.STARTING, Status.RUNNING)  # runs that hold one of the cap's slots
runs = runs_table.c


class Verdict(NamedTuple):
    """A change a dispatcher decided from what it read: run `id`, still recorded `status` with process `pid`,
    becomes `new_status` (with `error`). Applied only if the run has not changed meanwhile."""

    id: int
    status: str
    pid: int | None
    new_status: str
    error: str | None = None


class Store(RecordedData, ClassroomData):
    """The run store of one data folder (its database, checkpoints and cached datasets). Safe to share between
    threads: each call takes a connection from the process's pool and gives it back."""

    def __init__(self, home: str | os.PathLike | None = None) -> None:
        self.home = resolve_home(home)
        self.path = self.home / "runs.sqlite"  # the database when $RESNET_EXPLORER_DATABASE_URL is unset
        self.url = store_url(self.home)
        try:
            self.engine = engine_for(self.url)
        except (exc.DatabaseError, sqlite3.DatabaseError) as error:
            raise StoreError(f"Cannot open the run store {describe(self.url)} ({getattr(error, 'orig', None) or error})"
                             "; pass --home DIR for another data folder.") from None
        # With PostgreSQL and no folder every machine mounts, checkpoints travel in the database.
        self.checkpoints_in_database = keeps_checkpoints(self.engine)
        self.checkpoint_root = shared_checkpoint_folder() or self.home

    @property
    def where(self) -> str:
        """The database, for a message (no password)."""
        return describe(self.url)

    def _transaction(self, *, queue: bool = True):
        return write(self.engine, queue=queue)

    def _reading(self, *, snapshot: bool = False):
        return read(self.engine, snapshot=snapshot)

    # ------------------------------------------------------------------------------------ runs
    def create_run(self, *, name: str, spec: dict, recipe: dict, data: str, device: str, precision: str,
                   seed: int) -> int:
        """A new `queued` run; `claim` starts it."""
        return self.create_runs([dict(name=name, spec=spec, recipe=recipe, data=data, device=device,
                                      precision=precision, seed=seed)])[0]

    def create_runs(self, new_runs: list[dict], *, owner: str | None = None, per_owner: int | None = None,
                    max_waiting: int | None = None, cap: int = 1, taken_by: int | None = None) -> list[int]:
        """Queue `new_runs` (dicts of create_run's arguments, and `experiment` for an experiment job, or `kind` and
        `settings` for a segmentation run) all or none, for `owner` (None: no limits); their ids.

        The limits are `_check_room`'s; counting and inserting are one write transaction, so thirty people
        pressing Start at once cannot overshoot them. `taken_by`: the pid of the process that trains them itself
        (the CLI in the foreground); they are recorded running for it in the same transaction, so no dispatcher
        can start them in between.
        """
        with self._transaction() as db:
            self._check_room(db, len(new_runs), owner, per_owner, max_waiting, cap)
            ids = []
            for run in new_runs:
                experiment, settings = run.get("experiment"), run.get("settings")
                run_id = db.execute(runs_table.insert().values(
                    name=run["name"], model=run["spec"]["name"], spec=json.dumps(run["spec"]),
                    recipe=json.dumps(run["recipe"]), data=run["data"], device=run["device"],
                    precision=run["precision"], seed=run["seed"], status=Status.QUEUED, created=time.time(),
                    owner=owner, experiment=experiment and json.dumps(experiment),
                    settings=settings and json.dumps(settings),
                    kind=experiment["kind"] if experiment else run.get("kind", "train"))).inserted_primary_key[0]
                ids.append(run_id)
                if taken_by is not None:
                    self._take(db, run_id, taken_by, true())
            return ids

    @staticmethod
    def _check_room(db: Connection, count: int, owner: str | None, per_owner: int | None,
                    max_waiting: int | None, cap: int) -> None:
        """Refuse `count` more active runs of `owner` with RunLimitError past `per_owner` queued or running, and
        with ServerFullError when more than `max_waiting` runs would wait for one of the `cap` slots."""
        if owner is None:  # the CLI's runs: whoever runs it owns the machine
            return
        if per_owner is not None:
            active = db.execute(select(runs.id).where(runs.owner == owner, runs.status.in_(ACTIVE))
                                .order_by(runs.id)).scalars().all()
            if len(active) + count > per_owner:
                listed = ", ".join(f"#{run_id}" for run_id in active)
                raise RunLimitError(
                    f"Each person may have {per_owner} runs queued or running at once and you have {len(active)}"
                    f"{f' ({listed})' if active else ''}, so {count} more cannot start; wait for one to finish or "
                    "cancel it.")
        if max_waiting is not None:
            pending = db.execute(select(func.count()).where(runs.status.in_(ACTIVE))).scalar_one()
            if pending + count - cap > max_waiting:
                raise ServerFullError(f"The server is full: {max(pending - cap, 0)} runs are already waiting for a "
                                      "free slot; try again in a few minutes.")

    def claim(self, run_id: int, pid: int) -> bool:
        """Process `pid` takes a queued run itself (the CLI training in the foreground), past the queue and its cap;
        False when another process got there first."""
        with self._transaction() as db:
            return self._take(db, run_id, pid, runs.status == Status.QUEUED)

    def confirm(self, run_id: int, pid: int) -> bool:
        """Process `pid` of this machine confirms the run a dispatcher launched it for (or takes a queued run, as
        `claim`); False when the run was cancelled meanwhile, has ended, or belongs to another process."""
        with self._transaction() as db:
            return self._take(db, run_id, pid, or_(
                runs.status == Status.QUEUED,
                and_(runs.status == Status.STARTING, or_(runs.pid.is_(None), runs.pid == pid)),
                and_(runs.status == Status.RUNNING, runs.pid == pid, runs.node == this_node())))

    @staticmethod
    def _take(db: Connection, run_id: int, pid: int, condition) -> bool:
        """Within a write transaction: run `run_id` is running in process `pid` of this machine, with a fresh lease
        and no cancel pending, if it meets `condition`."""
        now = time.time()
        result = db.execute(runs_table.update().where(runs.id == run_id, condition).values(
            status=Status.RUNNING, pid=pid, process_started=processes.start_time(pid), node=this_node(), heartbeat=now,
            cancel_requested=None, started=func.coalesce(runs.started, now), ended=None, error=None, claimed=None))
        return result.rowcount == 1

    def renew_lease(self, run_id: int) -> bool:
        """The executor of a running job, this process, renews its lease; True when it must stop: a cancel was
        requested, or the job is no longer this process's (it was declared interrupted and taken by another)."""
        with self._transaction(queue=False) as db:
            mine = and_(runs.id == run_id, runs.status == Status.RUNNING, runs.pid == os.getpid(),
                        runs.node == this_node())
            renewed = db.execute(runs_table.update().where(mine).values(heartbeat=time.time())).rowcount == 1
            cancelled = db.execute(select(runs.cancel_requested).where(runs.id == run_id)).scalar()
        return not renewed or cancelled is not None

    def request_cancel(self, run_id: int) -> bool:
        """Ask a running job to stop at its next step (its executor reads this when it renews its lease); False
        when it is not running."""
        with self._transaction() as db:
            return db.execute(runs_table.update().where(runs.id == run_id, runs.status == Status.RUNNING)
                              .values(cancel_requested=time.time())).rowcount == 1

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
            if run.status in BUSY and not (run.node == this_node() and run.pid == os.getpid()):
                if run.node not in (None, this_node()):
                    raise StoreError(f"Run {run_id} is still running on {run.node}; cancel it before resuming.")
                if processes.running(run.pid, run.process_started):
                    raise StoreError(f"Run {run_id} is still running in process {run.pid}; cancel it before "
                                     "resuming.")
            if run.recorded_status in RESUMABLE:  # a busy run whose executor died is already counted
                self._check_room(db, 1, run.owner, per_owner, max_waiting, cap)
            if taken_by is not None:  # `create_runs`'s: running for that process at once, never seen queued
                self._take(db, run_id, taken_by, true())
            else:
                db.execute(runs_table.update().where(runs.id == run_id).values(
                    status=Status.QUEUED, pid=None, process_started=None, claimed=None, cancel_requested=None))
            return run

    def finish(self, run_id: int, status: str, error: str | None = None) -> None:
        if status not in ENDED:
            raise ValueError(f"Unknown final status {status!r}; allowed: {', '.join(ENDED)}.")
        with self._transaction(queue=False) as db:
            db.execute(runs_table.update().where(runs.id == run_id).values(status=status, error=error,
                                                                           ended=time.time()))

    def add_reference(self, run_id: int, reference: str, *, name: str, spec: dict, recipe: dict, data: str,
                      precision: str, metrics: list[dict], trained_at: float, wall_s: float | None) -> None:
        """Record a shipped reference net as the finished, read-only run `run_id` (negative: ids from 1 up stay the
        runs trained here) with its whole history; nothing when it is already here."""
        if run_id >= 0:
            raise ValueError(f"A reference run's id is negative; got {run_id}.")
        with self._transaction() as db:
            if db.execute(select(runs.id).where(or_(runs.id == run_id, runs.reference == reference))).first():
                return
            db.execute(runs_table.insert().values(
                id=run_id, name=name, model=spec["name"], spec=json.dumps(spec), recipe=json.dumps(recipe), data=data,
                device="cpu", precision=precision, seed=0, status=Status.FINISHED, created=trained_at,
                started=trained_at, ended=trained_at + (wall_s or 0), reference=reference))
            if metrics:
                db.execute(metrics_table.insert(), [{"run_id": run_id, **{column: row.get(column) for column in
                                                                          METRIC_COLUMNS}} for row in metrics])

    def reference_of(self, run_id: int) -> str | None:
        """The reference net run `run_id` is, or None; read without parsing the row, so a damaged run answers."""
        with self._reading() as db:
            row = db.execute(select(runs.reference).where(runs.id == run_id)).first()
        if row is None:
            raise StoreError(f"No run {run_id!r} in this data folder; `python -m resnet_core runs` lists the runs.")
        return row[0]

    def run(self, run_id: int) -> Run:
        with self._reading() as db:
            return self._run(db, run_id)

    @staticmethod
    def _run(db: Connection, run_id: int) -> Run:
        row = db.execute(select(runs_table).where(runs.id == run_id)).mappings().first()
        if row is None:
            raise StoreError(f"No run {run_id!r} in this data folder; `python -m resnet_core runs` lists the runs.")
        return Run.from_row(row)

    def runs(self, *, references: bool = False, kinds: tuple[str, ...] = ("train",)) -> list[Run]:
        """Every readable run of `kinds` (JOB_KINDS; by default those that trained a classifier; with `references`,
        the shipped reference runs first), oldest first; `damaged_runs` reports the others."""
        with self._reading() as db:
            return self._training_runs(db, references, kinds)

    def _training_runs(self, db: Connection, references: bool, kinds: tuple[str, ...] = ("train",)) -> list[Run]:
        where = runs.kind.in_(kinds) if references else and_(runs.kind.in_(kinds), runs.reference.is_(None))
        return [run for run in self._read_all(db, where) if isinstance(run, Run)]

    def experiments(self) -> list[Run]:
        """Every readable experiment run (explain.jobs), oldest first."""
        with self._reading() as db:
            return [run for run in self._read_all(db, runs.experiment.is_not(None)) if isinstance(run, Run)]

    def damaged_runs(self) -> dict[int, str]:
        """Run id -> why its row cannot be read."""
        with self._reading() as db:
            return {error.id: str(error) for error in self._read_all(db, true()) if isinstance(error, DamagedRunError)}

    def _read_all(self, db: Connection, where) -> list[Run | DamagedRunError]:
        return [self._read(row) for row in db.execute(select(runs_table).where(where).order_by(runs.id)).mappings()]

    @staticmethod
    def _read(row) -> Run | DamagedRunError:
        try:
            return Run.from_row(row)
        except DamagedRunError as error:
            return error

    def count_running(self) -> int:
        """Runs holding a slot: running, or starting (a job whose lease lapsed holds none)."""
        return sum(run.status in BUSY for run in self.active_runs())

    def summaries(self) -> list[dict]:  # of the runs trained here
        """One dict per run that trained a net (a classifier or a segmenter) with its latest training and test
        values (fractions, or None before the first)."""
        return [summary for _, summary in self.runs_and_summaries(kinds=TRAINING_KINDS)]

    def runs_and_summaries(self, *, references: bool = False,
                           kinds: tuple[str, ...] = ("train",)) -> list[tuple[Run, dict]]:
        """Every run of `kinds` (JOB_KINDS; by default those that trained a classifier) with its summary, both read
        in one snapshot: a run created or finishing meanwhile is either in both or in neither, and its status agrees
        with its latest values."""
        with self._reading(snapshot=True) as db:
            found = self._training_runs(db, references, kinds)
            latest = {(row["run_id"], row["kind"]): row for row in db.execute(text(
                "SELECT m.run_id, m.kind, m.iteration, m.error, m.loss, m.eta_s, m.miou FROM metrics m JOIN "
                "(SELECT run_id, kind, MAX(iteration) AS iteration FROM metrics GROUP BY run_id, kind) last "
                "USING (run_id, kind, iteration)")).mappings()}
        return [(run, run.summary(latest.get((run.id, "train")),
                                  latest.get((run.id, "test")) or latest.get((run.id, "validation")))) for run in found]

    # ------------------------------------------------------------------------------------ job queue
    def active_runs(self) -> list[Run | DamagedRunError]:
        """Runs recorded queued, starting or running, oldest first (damaged ones as their errors): a read. One whose
        lease lapsed is among them, reading `interrupted` (`Run.lapsed`), for a dispatcher to record so."""
        with self._reading() as db:
            return self._read_all(db, runs.status.in_(ACTIVE))

    def claim_slots(self, cap: int, verdicts: Iterable[Verdict] = ()) -> list[Run]:
        """Apply `verdicts` (each only if its run is unchanged), then move the oldest queued runs to `starting`
        while fewer than `cap` are busy; the runs claimed, for the caller to launch after this commits.

        One short write transaction: dispatchers racing in several processes, on several machines, never claim
        more than `cap` between them (SQLite's write lock; PostgreSQL's advisory lock, and the queued rows locked
        with SKIP LOCKED so a row another transaction holds is passed by, not waited on). A damaged queued run
        fails instead of being claimed.
        """
        now = time.time()
        claimed = []
        with self._transaction() as db:
            for verdict in verdicts:
                ended = now if verdict.new_status in ENDED else None
                pid = None if verdict.new_status == Status.QUEUED else verdict.pid
                same_pid = runs.pid.is_(None) if verdict.pid is None else runs.pid == verdict.pid
                db.execute(runs_table.update().where(runs.id == verdict.id, runs.status == verdict.status, same_pid)
                           .values(status=verdict.new_status, error=verdict.error, ended=ended, pid=pid,
                                   claimed=None, cancel_requested=None))
            busy = [self._read(row) for row in db.execute(select(runs_table).where(runs.status.in_(BUSY)))
                    .mappings()]
            free = cap - sum(not (isinstance(run, Run) and run.lapsed) for run in busy)
            queued = db.execute(select(runs_table).where(runs.status == Status.QUEUED).order_by(runs.id)
                                .limit(max(free, 0)).with_for_update(skip_locked=True)).mappings().all()
            for row in queued:
                run = self._read(row)
                if isinstance(run, DamagedRunError):
                    db.execute(runs_table.update().where(runs.id == run.id).values(
                        status=Status.FAILED, error=f"It could not start: {run}", ended=now))
                    continue
                db.execute(runs_table.update().where(runs.id == run.id).values(
                    status=Status.STARTING, pid=None, process_started=None, claimed=now, cancel_requested=None))
                claimed.append(run)
        return claimed

    def launched(self, run_id: int, pid: int, process_started: float | None) -> None:
        """Record the process a dispatcher started for a `starting` run (unless that process confirmed it first)."""
        with self._transaction(queue=False) as db:
            db.execute(runs_table.update().where(runs.id == run_id, runs.status == Status.STARTING,
                                                 runs.pid.is_(None))
                       .values(pid=pid, process_started=process_started, node=this_node()))

    def fail_start(self, run_id: int, error: str) -> None:
        """A `starting` run whose process could not be launched fails with `error`."""
        with self._transaction(queue=False) as db:
            db.execute(runs_table.update().where(runs.id == run_id, runs.status == Status.STARTING)
                       .values(status=Status.FAILED, error=error, ended=time.time()))

    def queued_ids(self) -> list[int]:
        """Queued runs in the order they will start."""
        with self._reading() as db:
            return db.execute(select(runs.id).where(runs.status == Status.QUEUED).order_by(runs.id)).scalars().all()

    def cancel_queued(self, run_id: int) -> bool:
        """Cancel a run that has not started (queued, or starting: its process then finds it cancelled and
        exits); False when it is already running or has ended."""
        with self._transaction() as db:
            return db.execute(runs_table.update().where(runs.id == run_id,
                                                        runs.status.in_((Status.QUEUED, Status.STARTING)))
                              .values(status=Status.CANCELLED, error="Cancelled before it started.",
                                      ended=time.time())).rowcount == 1

    def delete_run(self, run_id: int) -> bool:
        """Forget a run that is not busy, with its metrics and checkpoint rows (its files are the caller's);
        False when it is starting or running, or a reference."""
        with self._transaction() as db:
            return db.execute(runs_table.delete().where(runs.id == run_id, runs.status.not_in(BUSY),
                                                        runs.reference.is_(None))).rowcount == 1

    # ------------------------------------------------------------------------------------ a cluster's machines
    def record_nodes(self, nodes: list[dict]) -> None:
        """The cluster's machines as its dispatcher sees them now (dicts of the nodes table's columns but `seen`)."""
        now = time.time()
        with self._transaction(queue=False) as db:
            db.execute(nodes_table.delete())
            if nodes:
                db.execute(nodes_table.insert(), [{**node, "seen": now} for node in nodes])

    def nodes(self) -> list[dict]:
        """The cluster's machines as its dispatcher last recorded them; empty without a cluster."""
        with self._reading() as db:
            return [dict(row) for row in db.execute(select(nodes_table).order_by(nodes_table.c.name)).mappings()]
