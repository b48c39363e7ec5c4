"""Alembic's environment for the run store: always run from `runs.migrate` with the connection it opened (and
the transaction it began), never from a URL of its own, so the application and `alembic` agree on the database."""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
