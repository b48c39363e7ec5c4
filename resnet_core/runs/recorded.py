"""What runs record as they go, in the run store: metric rows, checkpoints and an experiment's results. A mixin of
`runs.store.Store`, which opens the database and the transactions.

A checkpoint is a safetensors file in its run's folder under the data folder (or under a folder every machine
shares, $RESNET_EXPLORER_CHECKPOINT_DIR); with PostgreSQL and no such folder its bytes also go into the database,
and a machine without the file fetches it from there when it reads it (`latest_checkpoint`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable

from sqlalchemy import delete, func, select

from .database import insert
from .schema import METRIC_COLUMNS, checkpoints_table, metrics_table, results_table

checkpoints, metrics, results = checkpoints_table.c, metrics_table.c, results_table.c


class RecordedData:
    # Store's: the data folders, where checkpoints live, and its transactions.
    home: Path
    checkpoint_root: Path
    checkpoints_in_database: bool

    # ------------------------------------------------------------------------------------ metrics
    def add_metrics(self, run_id: int, rows: Iterable[dict]) -> None:
        """Record metric rows (dicts with METRIC_COLUMNS) in one transaction; a row written again (a retry) replaces
        itself, so nothing is ever doubled."""
        values = [{"run_id": run_id, **{column: row.get(column) for column in METRIC_COLUMNS}} for row in rows]
        with self._transaction(queue=False) as db:
            insert(db, metrics_table, values, replace=True)

    def metrics(self, run_id: int, kind: str | None = None, after_iteration: int = -1) -> list[dict]:
        """Metric rows in iteration order; `after_iteration` lets a poller fetch only what is new."""
        query = select(*(metrics_table.c[column] for column in METRIC_COLUMNS)).where(
            metrics.run_id == run_id, metrics.iteration > after_iteration)
        if kind is not None:
            query = query.where(metrics.kind == kind)
        with self._reading() as db:
            return [dict(row) for row in db.execute(query.order_by(metrics.iteration, metrics.kind)).mappings()]

    def truncate_metrics(self, run_id: int, after_iteration: int) -> None:
        """Forget what a killed run recorded after its last checkpoint; the resumed run records it again."""
        with self._transaction(queue=False) as db:
            db.execute(delete(metrics_table).where(metrics.run_id == run_id, metrics.iteration > after_iteration))

    # ------------------------------------------------------------------------------------ checkpoints
    def run_dir(self, run_id: int) -> Path:
        return self.checkpoint_root / "runs" / str(run_id)

    def add_checkpoint(self, run_id: int, iteration: int, path: Path, keep: int = 1) -> None:
        """Record a checkpoint already on disk in the run's folder, and delete all but the newest `keep`.

        The table keeps the file's name; it is read back under `run_dir` of this store's home, so a data folder that
        was moved or copied keeps its runs (rows written before hold absolute paths: only their name counts)."""
        if path.parent.resolve() != self.run_dir(run_id).resolve():
            raise ValueError(f"A checkpoint of run {run_id} belongs in {self.run_dir(run_id)}, not {path.parent}.")
        data = path.read_bytes() if self.checkpoints_in_database else None
        with self._transaction(queue=False) as db:
            insert(db, checkpoints_table, [dict(run_id=run_id, iteration=iteration, path=path.name,
                                                created=time.time(), data=data)], replace=True)
            stale = db.execute(select(checkpoints.iteration, checkpoints.path).where(checkpoints.run_id == run_id)
                               .order_by(checkpoints.iteration.desc()).offset(keep)).all()
            if stale:
                db.execute(delete(checkpoints_table).where(checkpoints.run_id == run_id,
                                                           checkpoints.iteration.in_([row[0] for row in stale])))
        for _, recorded in stale:  # after the commit: a crash in between leaves a stray file, never a dangling row
            if Path(recorded).name != path.name:
                self.checkpoint_file(run_id, recorded).unlink(missing_ok=True)

    def latest_checkpoint(self, run_id: int) -> tuple[int, Path] | None:
        """(iteration, file) of the run's newest checkpoint, or None; a file only the database holds is fetched into
        the run's folder on this machine first."""
        with self._reading() as db:
            row = db.execute(select(checkpoints.iteration, checkpoints.path, func.length(checkpoints.data))
                             .where(checkpoints.run_id == run_id).order_by(checkpoints.iteration.desc())
                             .limit(1)).first()
        if row is None:
            return None
        iteration, recorded, size = row
        file = self.checkpoint_file(run_id, recorded)
        if size is not None and not (file.exists() and file.stat().st_size == size):
            self._fetch_checkpoint(run_id, iteration, file)
        return iteration, file

    def _fetch_checkpoint(self, run_id: int, iteration: int, file: Path) -> None:
        with self._reading() as db:
            data = db.execute(select(checkpoints.data).where(checkpoints.run_id == run_id,
                                                             checkpoints.iteration == iteration)).scalar_one()
        file.parent.mkdir(parents=True, exist_ok=True)
        staged = file.with_name(f".{file.name}.{os.getpid()}")
        staged.write_bytes(data)
        os.replace(staged, file)  # a reader never sees half a file

    def checkpoint_file(self, run_id: int, recorded: str) -> Path:
        return self.run_dir(run_id) / Path(recorded).name

    # ------------------------------------------------------------------------------------ experiment results
    def add_result(self, run_id: int, step: int, payload: dict) -> None:
        """Record step `step` of an experiment run (one deleted block, one row of a surface) as it is measured."""
        with self._transaction(queue=False) as db:
            insert(db, results_table, [dict(run_id=run_id, step=step, payload=json.dumps(payload))], replace=True)

    def results(self, run_id: int) -> list[dict]:
        """An experiment run's results so far, in step order."""
        with self._reading() as db:
            return [json.loads(payload) for payload in db.execute(
                select(results.payload).where(results.run_id == run_id).order_by(results.step)).scalars()]

    def clear_results(self, run_id: int) -> None:
        """Forget an experiment's results: a resumed experiment measures again from its first step."""
        with self._transaction(queue=False) as db:
            db.execute(delete(results_table).where(results.run_id == run_id))
