"""Jobs that execute anywhere: each run's job kind, the machine executing it, its lease and a cancel request as
columns; a checkpoint's bytes in the database when no folder is shared by every machine.

Every column is added empty or with its default, so no row is touched but these: an experiment run gets its kind
from its settings, and a run recorded as running gets a lease as old as its start, so one whose process is gone
reads as interrupted rather than running for ever.

Revision ID: 0002
Revises: 0001
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("runs", sa.Column("kind", sa.Text, nullable=False, server_default="train"))
    op.add_column("runs", sa.Column("node", sa.Text))
    op.add_column("runs", sa.Column("heartbeat", sa.Double))
    op.add_column("runs", sa.Column("cancel_requested", sa.Double))
    op.add_column("checkpoints", sa.Column("data", sa.LargeBinary))
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("experiment", sa.Text), sa.column("kind", sa.Text),
                    sa.column("status", sa.Text), sa.column("heartbeat", sa.Double), sa.column("started", sa.Double),
                    sa.column("created", sa.Double))
    connection = op.get_bind()
    for run_id, experiment in connection.execute(sa.select(runs.c.id, runs.c.experiment)
                                                 .where(runs.c.experiment.is_not(None))).all():
        try:
            kind = json.loads(experiment)["kind"]
        except (ValueError, TypeError, KeyError):  # a damaged row stays readable as damaged, as it was
            continue
        connection.execute(runs.update().where(runs.c.id == run_id).values(kind=kind))
    connection.execute(runs.update().where(runs.c.status == "running")
                       .values(heartbeat=sa.func.coalesce(runs.c.started, runs.c.created)))
