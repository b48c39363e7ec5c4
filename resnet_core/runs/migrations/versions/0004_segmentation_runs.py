"""Segmentation runs (issue 25): a run's own settings beyond its spec, recipe and data (a segmentation run's
backbone and scenes) as JSON, and the mIoU of a segmentation run's test rows beside their pixel error.

Both columns are added empty: every existing row keeps what it has, and reads as it did (a classifier's rows have
no mIoU, a training or experiment run no such settings).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("runs", sa.Column("settings", sa.Text))
    op.add_column("metrics", sa.Column("miou", sa.Double))
