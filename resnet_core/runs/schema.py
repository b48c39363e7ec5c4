"""What the run store holds: its tables and a run's row as a dataclass (older stores: runs.migrate, runs.legacy)."""
from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass
from typing import Mapping

from sqlalchemy import (CheckConstraint, Column, Double, ForeignKey, Index, Integer, LargeBinary, MetaData, Table,
                        Text, text)

from ..errors import StoreError
from ..nets.specs import NetSpec
from ..training.recipe import Recipe
from .settings import lease_seconds


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


# One row per (run, iteration, kind); kind is "train", "test" or "validation". A segmentation run's `error` is its
# pixel error, and its test rows have the `miou` a classifier's rows leave NULL.
METRIC_COLUMNS = ("iteration", "kind", "epoch", "loss", "error", "smoothed_loss", "smoothed_error", "lr",
                  "images_per_s", "elapsed_s", "eta_s", "miou")
JOB_KINDS = ("train", "lesion", "landscape", "segment")  # what a row of runs executes (runs.executor)
TRAINING_KINDS = ("train", "segment")  # the jobs that train a net and record metric rows as they go

# The newest schema, as Alembic's revisions in runs/migrations build it; the store's queries are written against
# these tables. Times are unix seconds (REAL), JSON is TEXT, as the SQLite store always had them.
metadata = MetaData()
runs_table = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("spec", Text, nullable=False),  # NetSpec.to_dict() as JSON
    Column("recipe", Text, nullable=False),  # Recipe.to_dict() as JSON
    Column("data", Text, nullable=False),  # dataset source: cifar10, cifar100, synthetic or a folder path
    Column("device", Text, nullable=False),
    Column("precision", Text, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("status", Text, CheckConstraint(f"status IN {sql_list(STATUSES)}", name="runs_status"), nullable=False),
    Column("created", Double, nullable=False),
    Column("started", Double),
    Column("ended", Double),
    Column("error", Text),
    Column("pid", Integer),  # the process executing it, on machine `node`
    Column("owner", Text),  # who started it from the app (a browser's hashed id), NULL from the CLI
    Column("process_started", Double),  # the start time of process `pid`: a reused pid has another
    Column("claimed", Double),  # when a dispatcher made it `starting`
    Column("reference", Text),  # the shipped reference net it is (read-only), NULL for a run trained here
    Column("experiment", Text),  # an experiment's settings as JSON (explain.jobs), NULL for a training run
    Column("kind", Text, nullable=False, server_default="train"),  # one of JOB_KINDS
    Column("node", Text),  # the machine executing it (or that last did)
    Column("heartbeat", Double),  # when its executor last renewed its lease
    Column("cancel_requested", Double),  # when a stop was asked for: its executor stops at its next step
    Column("settings", Text),  # a segmentation run's backbone and scenes as JSON (pixels.jobs), NULL for others
    Index("runs_reference", "reference", unique=True, sqlite_where=text("reference IS NOT NULL"),
          postgresql_where=text("reference IS NOT NULL")),
    sqlite_autoincrement=True,  # ids are never reused: a deleted run's number stays its own
)
metrics_table = Table(
    "metrics", metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("iteration", Integer, primary_key=True),  # optimizer steps done when measured
    Column("epoch", Integer, nullable=False),
    *(Column(name, Double) for name in METRIC_COLUMNS[3:]),
)
results_table = Table(
    "results", metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("step", Integer, primary_key=True),  # an experiment's steps in the order it measures them
    Column("payload", Text, nullable=False),  # JSON
)
checkpoints_table = Table(
    "checkpoints", metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("iteration", Integer, primary_key=True),
    Column("path", Text, nullable=False),  # its file's name in the run's folder
    Column("created", Double, nullable=False),
    Column("data", LargeBinary),  # the file's bytes when the database is where every machine reads them
)
lesson_table = Table(  # one row while the teacher hands out Fig. 6's cells (runs.classroom)
    "lesson", metadata,
    Column("id", Integer, CheckConstraint("id = 1", name="lesson_one_row"), primary_key=True, autoincrement=False),
    Column("iterations", Integer),  # each cell's length, NULL for the Train page's default
    Column("started", Double, nullable=False),
)
nodes_table = Table(  # a cluster's machines as its dispatcher last saw them (runs.launchers.cluster)
    "nodes", metadata,
    Column("name", Text, primary_key=True),  # as runs.node records it
    Column("alive", Integer, nullable=False),
    Column("cpus", Double, nullable=False),
    Column("gpus", Double, nullable=False),
    Column("slots", Integer, nullable=False),  # runs it can train at once
    Column("seen", Double, nullable=False),
)
assignments_table = Table(
    "assignments", metadata,
    Column("owner", Text, primary_key=True),  # a browser's hashed id, as runs.owner
    Column("depth", Integer, nullable=False),  # the cell: plain and residual nets of this depth
    Column("assigned", Double, nullable=False),
)


class DamagedRunError(StoreError):
    """A run's row that cannot be read back (e.g. its JSON was cut or edited by hand)."""

    def __init__(self, message: str, row: Mapping) -> None:
        super().__init__(message)
        # What the queue needs to fail a damaged run whose process died.
        self.id, self.status, self.pid, self.process_started = (row["id"], row["status"], row["pid"],
                                                                row.get("process_started"))
        self.node = row.get("node")
        self.lapsed = lease_lapsed(row["status"], row.get("heartbeat"))


def lease_lapsed(status: str, heartbeat: float | None) -> bool:
    """Whether a job recorded as running has lost its executor: its lease was not renewed for LEASE_S."""
    return status == Status.RUNNING and heartbeat is not None and time.time() - heartbeat > lease_seconds()


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
    status: str  # as every reader should see it: a running job whose lease lapsed reads `interrupted`
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
    kind: str = "train"  # one of JOB_KINDS
    node: str | None = None  # the machine executing it, or that last did
    heartbeat: float | None = None
    cancel_requested: float | None = None  # when a stop was asked for, while it runs
    settings: dict | None = None  # a segmentation run's backbone and scenes (pixels.jobs)
    recorded_status: str = ""  # the status column itself: `running` for a job whose lease lapsed

    @property
    def lapsed(self) -> bool:
        """A job recorded as running whose executor is gone (its lease lapsed); a dispatcher records it interrupted."""
        return self.recorded_status == Status.RUNNING and self.status == Status.INTERRUPTED

    def summary(self, train: Mapping | None, test: Mapping | None) -> dict:
        """The run with its latest training and `test` metric rows, as `python -m resnet_core runs --json` lists it."""
        return {
            "id": self.id, "name": self.name, "model": self.model, "data": self.data, "status": self.status,
            "kind": self.kind, "iterations_done": train["iteration"] if train else 0,
            "iterations_total": self.recipe["iterations"],
            "train_error": train["error"] if train else None, "train_loss": train["loss"] if train else None,
            "test_error": test["error"] if test else None, "test_loss": test["loss"] if test else None,
            "test_miou": test["miou"] if test else None,  # a segmentation run's; None for a classifier's
            "device": self.device, "precision": self.precision, "seed": self.seed, "created": self.created,
            "started": self.started, "ended": self.ended, "error": self.error, "pid": self.pid, "node": self.node,
            "heartbeat": self.heartbeat,
            # Seconds to its end while it trains: its steps and its test passes still to come (training.train).
            "eta_s": train.get("eta_s") if train and self.status == Status.RUNNING else None}

    @classmethod
    def from_row(cls, row: Mapping) -> "Run":
        """The run of a row, its spec and recipe complete; DamagedRunError when they cannot be read."""
        values = dict(row)
        try:
            values["recorded_status"] = values["status"] = Status(values["status"])
            values["experiment"] = values["experiment"] and json.loads(values["experiment"])
            values["settings"] = values["settings"] and json.loads(values["settings"])
            # Through the dataclasses and back, so a reader can rely on every field being there.
            values["spec"] = NetSpec.from_dict(json.loads(values["spec"])).to_dict()
            values["recipe"] = Recipe.from_dict(json.loads(values["recipe"])).to_dict()
        except (ValueError, TypeError, AttributeError) as error:  # bad JSON, a list, unknown fields or status
            raise DamagedRunError(f"Run {values['id']}'s record in the store is damaged ({error}); the Runs page can "
                                  "delete it.", values) from None
        if lease_lapsed(values["status"], values["heartbeat"]):
            values["status"] = Status.INTERRUPTED
            values["error"] = (f"Interrupted: its executor on {values['node'] or 'an unknown machine'} stopped "
                               f"renewing its lease at {time.strftime('%H:%M:%S', time.localtime(values['heartbeat']))}"
                               "; resume it to continue from its last checkpoint.")
        return cls(**values)
