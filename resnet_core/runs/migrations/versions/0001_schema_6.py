"""The run store as it was before Alembic: the SQLite store's schema version 6 (runs, metrics, results,
checkpoints, lesson, assignments). An SQLite file of version 6 is stamped with this revision, not built by it.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

STATUSES = "('queued', 'starting', 'running', 'finished', 'failed', 'cancelled', 'diverged', 'interrupted')"


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("recipe", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("precision", sa.Text, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, sa.CheckConstraint(f"status IN {STATUSES}", name="runs_status"), nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("started", sa.Double),
        sa.Column("ended", sa.Double),
        sa.Column("error", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("owner", sa.Text),
        sa.Column("process_started", sa.Double),
        sa.Column("claimed", sa.Double),
        sa.Column("reference", sa.Text),
        sa.Column("experiment", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index("runs_reference", "runs", ["reference"], unique=True,
                    sqlite_where=sa.text("reference IS NOT NULL"), postgresql_where=sa.text("reference IS NOT NULL"))
    op.create_table(
        "metrics",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        *(sa.Column(name, sa.Double) for name in ("loss", "error", "smoothed_loss", "smoothed_error", "lr",
                                                  "images_per_s", "elapsed_s", "eta_s")),
        sa.PrimaryKeyConstraint("run_id", "kind", "iteration"),
    )
    op.create_table(
        "results",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "iteration"),
    )
    op.create_table(
        "lesson",
        sa.Column("id", sa.Integer, sa.CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
        sa.Column("iterations", sa.Integer),
        sa.Column("started", sa.Double, nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("assigned", sa.Double, nullable=False),
    )
