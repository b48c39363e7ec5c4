"""A room's runs pooled per net, for the Class page's Fig. 6: how many people and runs each net has, and its
curves as the median and range across people.

Each person counts once per net: their latest run of it that has curves (finished, or training now, so the pool
moves while runs train). A person who trains a net twice (a retry after a mistake) is not two people agreeing.
People are told apart by the run's owner (a browser's hashed id); a run from the CLI has none and counts as a
person of its own. Errors are fractions, as the store records them. No UI code here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..nets.specs import NetSpec
from .schema import Run, Status

POOLED = (Status.FINISHED, Status.RUNNING, Status.STARTING)  # runs with curves that say what the net does
STOPPED = (Status.FAILED, Status.CANCELLED, Status.DIVERGED, Status.INTERRUPTED)
POOL_COLUMNS = ("iteration", "median", "low", "high", "people")


@dataclass(frozen=True)
class RunRows:
    """One run with its metric rows (runs.schema.METRIC_COLUMNS) split by kind, in iteration order."""

    run: Run
    train: pd.DataFrame
    test: pd.DataFrame  # the test or validation rows


@dataclass(frozen=True)
class NetPool:
    """One net's runs across the room."""

    model: str
    depth: int
    residual: bool
    people: int  # people with any run of it
    counts: dict[str, int]  # runs: "finished", "running" (starting too), "queued", "stopped" (failed, cancelled, …)
    yours: int  # runs of it the asking person owns
    train: pd.DataFrame  # POOL_COLUMNS of the smoothed training error
    test: pd.DataFrame  # POOL_COLUMNS of the test error
    final: tuple[float, ...]  # each person's final test error, from their latest finished run

    @property
    def runs(self) -> int:
        return sum(self.counts.values())


def person_of(run: Run) -> str:
    return run.owner or f"run {run.id}"


def pool(curves: Sequence[pd.DataFrame], column: str) -> pd.DataFrame:
    """Median, lowest and highest of `column` at each iteration across `curves`, and how many had a value there
    (a run still training has none past its last point)."""
    if not curves:
        return pd.DataFrame(columns=list(POOL_COLUMNS))
    wide = pd.concat([curve.groupby("iteration")[column].last() for curve in curves], axis=1).sort_index()
    return pd.DataFrame({"iteration": wide.index, "median": wide.median(axis=1), "low": wide.min(axis=1),
                         "high": wide.max(axis=1), "people": wide.count(axis=1)}).reset_index(drop=True)


def pool_nets(rows: Sequence[RunRows], owner: str | None) -> list[NetPool]:
    """Every net of `rows`, plain before residual and shallow before deep (custom nets last, by name); `owner`'s
    runs are counted as theirs."""
    by_model: dict[str, list[RunRows]] = {}
    for row in sorted(rows, key=lambda row: row.run.id):
        by_model.setdefault(row.run.model, []).append(row)
    nets = []
    for model, runs in by_model.items():
        spec = NetSpec.from_dict(runs[0].run.spec)
        latest: dict[str, RunRows] = {}  # person -> their latest run with curves; later ids overwrite earlier
        finished: dict[str, RunRows] = {}
        for row in runs:
            if row.run.status in POOLED:
                latest[person_of(row.run)] = row
            if row.run.status == Status.FINISHED and len(row.test):
                finished[person_of(row.run)] = row
        statuses = [row.run.status for row in runs]
        nets.append(NetPool(
            model=model, depth=spec.depth, residual=spec.residual,
            people=len({person_of(row.run) for row in runs}),
            counts={"finished": statuses.count(Status.FINISHED),
                    "running": sum(status in (Status.RUNNING, Status.STARTING) for status in statuses),
                    "queued": statuses.count(Status.QUEUED),
                    "stopped": sum(status in STOPPED for status in statuses)},
            yours=sum(owner is not None and row.run.owner == owner for row in runs),
            train=pool([row.train for row in latest.values() if len(row.train)], "smoothed_error"),
            test=pool([row.test for row in latest.values() if len(row.test)], "error"),
            final=tuple(float(row.test["error"].iloc[-1]) for row in finished.values())))
    def order(net: NetPool) -> tuple:
        paper_name = net.model == f"{'resnet' if net.residual else 'plain'}{net.depth}"
        return (0, net.residual, net.depth, "") if paper_name else (1, False, 0, net.model)

    return sorted(nets, key=order)
