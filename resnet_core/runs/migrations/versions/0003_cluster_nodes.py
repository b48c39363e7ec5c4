"""The machines of a cluster as its dispatcher last saw them, so the app and the CLI can count machines and free
slots without connecting to the cluster themselves.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("alive", sa.Integer, nullable=False),
        sa.Column("cpus", sa.Double, nullable=False),
        sa.Column("gpus", sa.Double, nullable=False),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("seen", sa.Double, nullable=False),
    )
