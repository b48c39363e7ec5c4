"""`python -m resnet_core db copy --to URL`: a data folder's runs, metrics, results, checkpoints and lesson, copied
into another database (a teacher moving from a laptop's SQLite file to a shared PostgreSQL server).

Rows keep their ids, so every link between them (a metric's run, a person's runs) holds; a row already there is
left as it is, so copying twice, or again after an interrupted copy, doubles nothing. A run id the target already
uses for another run (its creation time or name differ) stops the copy before anything is written. A checkpoint
travels as bytes when the target keeps checkpoints in the database (PostgreSQL with no shared folder); otherwise
the files stay where every process of the data folder already reads them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select, text

from ..errors import StoreError
from .database import describe, engine_for, insert, is_postgresql, keeps_checkpoints, read, write
from .schema import (assignments_table, checkpoints_table, lesson_table, metrics_table, results_table,
                     runs_table)
from .store import Store

logger = logging.getLogger(__name__)
BATCH = 5_000  # rows per INSERT: a 64,000-iteration run's metrics go in a few statements, not one huge one
TABLES = (runs_table, metrics_table, results_table, checkpoints_table, lesson_table, assignments_table)


@dataclass(frozen=True)
class CopyReport:
    """Rows per table: in the source, and newly written to the target by this copy."""

    target: str  # the database, without its password
    source: dict[str, int]
    added: dict[str, int]

    def describe(self) -> str:
        return ", ".join(f"{name} {self.added[name]} new of {count}" for name, count in self.source.items())


def copy_store(source: Store, target_url: str) -> CopyReport:
    """Copy every row of `source` into the database at `target_url` (migrated to the newest schema first)."""
    target = engine_for(target_url)
    if target.url == source.engine.url:
        raise StoreError(f"The data folder's runs are already in {describe(target_url)}; name another database.")
    checkpoint_bytes = keeps_checkpoints(target)
    with read(source.engine, snapshot=True) as db:
        rows = {table.name: [dict(row) for row in db.execute(select(table)).mappings()] for table in TABLES}
    if checkpoint_bytes:
        rows["checkpoints"] = [row for row in (_with_bytes(source, row) for row in rows["checkpoints"]) if row]
    with write(target) as db:
        _refuse_other_runs(db, rows["runs"], target_url)
        before = _counts(db)
        for table in TABLES:
            for start in range(0, len(rows[table.name]), BATCH):
                insert(db, table, rows[table.name][start:start + BATCH], replace=False)
        if is_postgresql(target):  # ids were given, not drawn: the next run must not collide with a copied one
            db.execute(text("SELECT setval(pg_get_serial_sequence('runs', 'id'), "
                            "GREATEST((SELECT MAX(id) FROM runs), 1))"))
        after = _counts(db)
    return CopyReport(describe(target_url), {name: len(found) for name, found in rows.items()},
                      {name: after[name] - before[name] for name in after})


def _with_bytes(source: Store, row: dict) -> dict | None:
    """A checkpoint row with its file's bytes, or None (logged) when the file is gone."""
    if row["data"] is not None:
        return row
    file = source.checkpoint_file(row["run_id"], row["path"])
    try:
        return {**row, "data": file.read_bytes()}
    except OSError as error:
        logger.warning("Run %s's checkpoint %s cannot be read (%s); it is not copied.", row["run_id"], file,
                       error.strerror or error)
        return None


def _refuse_other_runs(db, source_runs: list[dict], target_url: str) -> None:
    ids = [row["id"] for row in source_runs]
    theirs = {row.id: row for row in db.execute(select(runs_table.c.id, runs_table.c.created, runs_table.c.name)
                                                .where(runs_table.c.id.in_(ids)))}
    clashes = [row["id"] for row in source_runs if row["id"] in theirs
               and (theirs[row["id"]].created, theirs[row["id"]].name) != (row["created"], row["name"])]
    if clashes:
        raise StoreError(f"{describe(target_url)} already has other runs numbered {', '.join(map(str, clashes[:10]))}"
                         "; copy into an empty database, or into the one this folder was copied to before.")


def _counts(db) -> dict[str, int]:
    return {table.name: db.execute(select(func.count()).select_from(table)).scalar_one() for table in TABLES}
