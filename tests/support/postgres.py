"""A private PostgreSQL server for tests: Debian's package (installed when missing and root),
initdb + pg_ctl in a temporary folder, listening on loopback only, like the private RabbitMQ."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rpcfleet.broker import free_port


def _bin(name: str) -> Path | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return Path(found[-1]) if found else None


def ensure_installed() -> Path:
    """The folder of initdb and pg_ctl; installs Debian's `postgresql` when missing and root."""
    found = _bin("initdb")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
        found = _bin("initdb")
    if found is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    return found.parent


@dataclass
class PostgresServer:
    directory: Path
    port: int
    bin_dir: Path

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        # initdb refuses to run as root: as root, run it as the postgres user.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        data = self.directory / "data"
        self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                  "postgres", "--no-sync")
        self.start_again()

    def start_again(self) -> None:
        """Start the server on its existing data (after `stop`: a database outage ends)."""
        data = self.directory / "data"
        # fsync off: a test server's data is thrown away; durability is not what it tests.
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l",
                  str(self.directory / "log"), "-w", "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off", "start")

    def stop(self) -> None:
        """Stop the server (a database outage, or the end); a stopped one stays stopped."""
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


def private_server(directory: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(directory, free_port(), ensure_installed())
    server.start()
    try:
        yield server
    finally:
        server.stop()
