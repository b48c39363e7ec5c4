"""Bringing a run store's database to the newest schema with Alembic (revisions in runs/migrations/versions).

Opening a store does this (`runs.database.engine_for`), and so does `python -m resnet_core db upgrade`. A read
decides first, because the app opens a store on every page poll and a migration's write lock would make every poll
wait; only a database behind the newest revision takes it, and checks again under it (two processes may open a
new database at once). An SQLite file of the store before Alembic counted its schema in PRAGMA user_version: one
older than 6 is brought to 6 by `runs.legacy`, and 6 is stamped as revision 0001 before the rest run.
"""
from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import make_url

from ..errors import StoreError
from . import legacy
from .database import MIGRATIONS, describe, read, write

logger = logging.getLogger(__name__)
FIRST_REVISION = "0001"  # the schema of the last store before Alembic (legacy.LAST_VERSION)


def upgrade(engine: Engine) -> None:
    """Migrate `engine`'s database to the newest revision, or create its tables if it has none."""
    url = make_url(engine.url)
    if url.get_backend_name() == "sqlite" and url.database:
        legacy.bring_to_last_version(Path(url.database))
    scripts = ScriptDirectory(str(MIGRATIONS))
    head = scripts.get_current_head()
    with read(engine) as connection:
        if _revision(connection) == head:
            return
    with write(engine) as connection:
        current = _revision(connection)
        if current == head:
            return
        known = {script.revision for script in scripts.walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(f"The run store {describe(str(engine.url))} has schema revision {current}, written by a "
                             "newer ResNet Explorer; upgrade this installation to open it.")
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        if current is None and inspect(connection).has_table("runs"):  # an SQLite store of user_version 6
            current = FIRST_REVISION
            command.stamp(config, FIRST_REVISION)
        if current is not None:
            logger.warning("Migrating the run store %s from schema revision %s to %s.", describe(str(engine.url)),
                           current, head)
        command.upgrade(config, "head")


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
