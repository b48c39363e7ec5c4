"""Servers the tests start for themselves: PostgreSQL for the run store, which must behave the same on it as on its
default SQLite file. `conftest` re-exports the fixtures; `benchmarks.bench_store` imports `PostgresServer`.

One throwaway cluster serves the whole session (initdb and start take ~1 s) and each test gets a fresh database in
it (~50 ms). The cluster listens on a Unix socket in its own folder only, so it needs no network and cannot clash
with a server already on the machine. RESNET_EXPLORER_TEST_DATABASE_URL names a server to use instead (its user must
be allowed to create databases).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from resnet_core.runs import settings

__all__ = ["PostgresServer", "ServerUnavailable", "connect", "database_url", "postgres_server", "postgres_url"]

# Read once at import, before `isolated_home` hides every RESNET_EXPLORER_* variable from the tests.
EXTERNAL_URL = os.environ.get("RESNET_EXPLORER_TEST_DATABASE_URL")
DEBIAN_INSTALLS = Path("/usr/lib/postgresql")  # one MAJOR/bin folder per installed version
PREFERRED_MAJOR = 15  # the version GUIDE §6 measured and the store is written against
SUPERUSER = "postgres"
PORT = 5432  # with no TCP listener it only names the socket file in the cluster's own folder


class ServerUnavailable(Exception):
    """No PostgreSQL server can be started on this machine; the message says why, in one sentence."""


def connect(url: str, **options) -> psycopg.Connection:
    """A psycopg connection to the database that the SQLAlchemy URL `url` names; a Unix socket's folder and port sit
    in its query (?host=…&port=…), where psycopg, unlike SQLAlchemy, does not look for them."""
    parsed = make_url(url)
    return psycopg.connect(host=parsed.query.get("host", parsed.host), port=parsed.query.get("port", parsed.port),
                           user=parsed.username, password=parsed.password, dbname=parsed.database, **options)


def binaries() -> Path:
    """The folder of initdb and pg_ctl: Debian's for PREFERRED_MAJOR, else its newest version, else the one on PATH."""
    installed = {int(initdb.parts[-3]): initdb.parent for initdb in DEBIAN_INSTALLS.glob("*/bin/initdb")
                 if initdb.parts[-3].isdigit()}
    if installed:
        return installed.get(PREFERRED_MAJOR, installed[max(installed)])
    on_path = shutil.which("initdb")
    if on_path is None:
        raise ServerUnavailable(f"PostgreSQL is not installed (no initdb in {DEBIAN_INSTALLS}/*/bin or on PATH); "
                                "apt-get install postgresql")
    return Path(on_path).parent


class PostgresServer:
    """A PostgreSQL server to make test databases in: a throwaway cluster of this process's own (`throwaway`), or an
    existing server reached through `admin_url`, a database its user may create others from."""

    def __init__(self, admin_url: str, folder: Path | None = None, bin_dir: Path | None = None) -> None:
        self.admin_url = admin_url
        self.folder = folder  # the throwaway cluster's: data/, sock/ and server.log; None for an existing server
        self.bin_dir = bin_dir
        self.created: list[str] = []

    @classmethod
    def throwaway(cls) -> PostgresServer:
        """A fresh cluster, started; `close` stops it and deletes its folder."""
        bin_dir = binaries()
        as_root = os.geteuid() == 0
        if as_root:
            try:
                pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise ServerUnavailable(f"running as root, and initdb refuses root, but there is no {SUPERUSER} user "
                                        "to run it as") from None
        # Directly under the temporary folder: the postgres user cannot enter pytest's (root's, mode 0700).
        folder = Path(tempfile.mkdtemp(prefix="resnet-postgres-"))
        server = cls(f"postgresql+psycopg://{SUPERUSER}@/postgres?host={folder / 'sock'}&port={PORT}", folder, bin_dir)
        try:
            (folder / "sock").mkdir()
            if as_root:
                for path in (folder, folder / "sock"):
                    shutil.chown(path, SUPERUSER, SUPERUSER)
            # --no-sync and fsync=off: a crash may lose this cluster, which is thrown away anyway.
            server._pg("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", SUPERUSER, "--no-sync")
            server.start()
        except BaseException:
            server.close()
            raise
        return server

    def url(self, database: str) -> str:
        """SQLAlchemy's URL of `database` on this server."""
        if self.folder is not None:  # written out plainly: a percent-escaped socket path would trip ConfigParser
            return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.folder / 'sock'}&port={PORT}"
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create_database(self) -> str:
        """A new, empty database of its own name; its URL."""
        name = f"test_{uuid.uuid4().hex[:16]}"
        with connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return self.url(name)

    def drop_connections(self, url: str) -> int:
        """Terminate every connection to the database of `url`, as a server restart would, and wait until they are
        gone; how many there were."""
        with connect(self.admin_url, autocommit=True) as admin:
            # The timeout (ms) makes pg_terminate_backend wait until each backend has exited.
            return len(admin.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                                     "WHERE datname = %s AND pid <> pg_backend_pid()",
                                     (make_url(url).database,)).fetchall())

    def stop(self) -> None:
        """Shut the server down (its clients are disconnected) and wait until it has; `start` brings it back."""
        self._pg("pg_ctl", "-D", str(self._own_folder() / "data"), "-m", "fast", "-w", "stop")

    def start(self) -> None:
        """Start the stopped server and wait until it accepts connections."""
        folder = self._own_folder()
        # -l: without a log file the server would keep pg_ctl's output pipe, and this call, open.
        self._pg("pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w", "-o",
                 f"-k {folder / 'sock'} -p {PORT} -c listen_addresses='' -c fsync=off", "start")

    def close(self) -> None:
        """Stop a throwaway cluster at once and delete it; on an existing server, drop the databases made here."""
        if self.folder is None:
            with connect(self.admin_url, autocommit=True) as admin:
                for name in self.created:
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            return
        if (self.folder / "data" / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder)

    def _own_folder(self) -> Path:
        if self.folder is None:
            pytest.skip("RESNET_EXPLORER_TEST_DATABASE_URL names a server the tests may not stop or start")
        return self.folder

    def _pg(self, program: str, *arguments: str) -> None:
        command = [str(self.bin_dir / program), *arguments]
        if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            log = self.folder / "server.log"
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"
                               f"{log.read_text() if log.exists() else ''}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server: RESNET_EXPLORER_TEST_DATABASE_URL's, else a throwaway cluster started for
    it. Skips the test where neither can be had."""
    try:
        server = PostgresServer(EXTERNAL_URL) if EXTERNAL_URL else PostgresServer.throwaway()
    except ServerUnavailable as why:
        pytest.skip(f"No PostgreSQL server for this test: {why}.")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The SQLAlchemy URL of a fresh, empty database of this test's own."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, isolated_home: Path, monkeypatch) -> str | None:
    """Runs a test once per database the store speaks: None for its default SQLite file in the test's data folder,
    else a fresh PostgreSQL database's URL, which $RESNET_EXPLORER_DATABASE_URL then names. After `isolated_home`,
    which removes that variable."""
    if request.param == "sqlite":
        return None
    url = request.getfixturevalue("postgres_url")  # only here: a SQLite-only session starts no server
    monkeypatch.setenv(settings.DATABASE_VARIABLE, url)
    return url
