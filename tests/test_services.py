"""The PostgreSQL fixtures (tests/services.py) give what the store's tests rely on: a database of each test's own,
reachable through its SQLAlchemy URL, on a server a test can stop and start again."""
from __future__ import annotations

import os

import psycopg
import pytest
from services import connect
from sqlalchemy.engine import make_url

from resnet_core.runs import settings


def test_a_test_database_answers_through_its_url(postgres_url):
    with connect(postgres_url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
        assert connection.info.dbname == make_url(postgres_url).database


def test_each_database_is_new_and_empty(postgres_server, postgres_url):
    other = postgres_server.create_database()
    assert other != postgres_url
    with connect(other) as connection:
        assert connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_a_stopped_server_refuses_connections_until_started(postgres_server, postgres_url):
    with connect(postgres_url) as held:
        postgres_server.stop()
        try:
            with pytest.raises(psycopg.OperationalError):
                connect(postgres_url)
            with pytest.raises(psycopg.OperationalError):  # a client's connection does not outlive the server
                held.execute("SELECT 1")
        finally:
            postgres_server.start()
    with connect(postgres_url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_dropped_connections_fail_and_new_ones_work(postgres_server, postgres_url):
    with connect(postgres_url) as held:
        assert postgres_server.drop_connections(postgres_url) == 1
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
    with connect(postgres_url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_database_url_names_the_store_database(database_url):
    assert os.environ.get(settings.DATABASE_VARIABLE) == database_url
    if database_url is not None:
        with connect(database_url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
