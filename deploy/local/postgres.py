"""PostgreSQL 15 with TimescaleDB in a project-owned cluster (own port, own data folder)."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import psycopg

from deploy.local import install, procs
from deploy.local.base import Service, ServiceError

BIN = Path("/usr/lib/postgresql/15/bin")


class Postgres(Service):
    """The cluster runs as the ``postgres`` OS user when the stack is started as root."""

    name = "postgres"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def marker(self) -> str:
        return str(self.data)

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _chown(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam("postgres")
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)

    def prepare(self) -> None:
        if self.settings.install:
            version = install.ensure_timescaledb(
                self.layout.cache, self.settings.timescaledb_suite, self.say
            )
            self.say(f"TimescaleDB {version} installed for PostgreSQL 15")
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = self.dir / "run"
        sock.mkdir(exist_ok=True)
        self._chown(self.dir, sock)
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.dir / "initdb.pw"
            pwfile.write_text(self.settings.pg_password + "\n")
            self._chown(pwfile)
            pwfile.chmod(0o600)
            cmd = [
                str(BIN / "initdb"), "-D", str(self.data), "-U", self.settings.pg_user,
                f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                "-E", "UTF8", "--no-locale",
            ]  # fmt: skip
            proc = subprocess.run(self._as_owner(cmd), capture_output=True, text=True, check=False)
            pwfile.unlink()
            if proc.returncode != 0:
                raise ServiceError(f"initdb failed:\n{proc.stdout}{proc.stderr}")
            with (self.data / "postgresql.conf").open("a") as main_conf:
                main_conf.write("\ninclude 'pilotstream.conf'\n")
        s = self.settings
        conf = "\n".join(
            [
                "# written by pilotstream stack up on every start",
                "listen_addresses = '127.0.0.1'",
                f"port = {s.pg_port}",
                f"unix_socket_directories = '{sock}'",
                "shared_preload_libraries = 'timescaledb'",
                "timescaledb.telemetry_level = off",
                "max_connections = 200",
                f"shared_buffers = {s.pg_shared_buffers_mb}MB",
                "work_mem = 32MB",
                "maintenance_work_mem = 256MB",
                "max_wal_size = 4GB",
                "checkpoint_timeout = 15min",
                "wal_compression = on",
                "wal_buffers = 64MB",
                "max_locks_per_transaction = 256",
                "timescaledb.max_background_workers = 4",
                "max_worker_processes = 16",
                "",
            ]
        )
        target = self.data / "pilotstream.conf"
        target.write_text(conf)
        self._chown(target)

    def start(self) -> None:
        cmd = [
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "start",
        ]
        if not self.log_path.exists():
            self.log_path.touch()
            self._chown(self.log_path)
        proc = subprocess.run(self._as_owner(cmd), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = (
                f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n--- last lines of {self.log_path} ---\n"
                f"{procs.tail(self.log_path)}\n--- retry with: .venv/bin/pilotstream stack up"
            )
            raise ServiceError(msg)
        pid = procs.read_pid(self.data / "postmaster.pid")
        self.pid_file.write_text(f"{pid}\n")

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None or not self.running():
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGINT)  # fast shutdown: roll back open transactions, then exit
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.running():
            time.sleep(0.2)
        if self.running():
            procs.terminate(pid, self.marker, timeout_s=1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _connect(self, dbname: str) -> psycopg.Connection[tuple[object, ...]]:
        s = self.settings
        return psycopg.connect(
            host=s.pg_host, port=s.pg_port, dbname=dbname, user=s.pg_user,
            password=s.pg_password, connect_timeout=5, autocommit=True,
        )  # fmt: skip

    def ping(self) -> None:
        with self._connect("postgres") as conn:
            conn.execute("SELECT 1")

    def after_start(self) -> str:
        """Create the application database and the timescaledb extension in it, if missing."""
        s = self.settings
        changed = []
        with self._connect("postgres") as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (s.pg_database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{s.pg_database}"')
                changed.append(f"created database {s.pg_database}")
        with self._connect(s.pg_database) as conn:
            has = conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            if not has:
                conn.execute("CREATE EXTENSION timescaledb")
                changed.append("created extension timescaledb")
        return ", ".join(changed)

    def check(self) -> str:
        s = self.settings
        try:
            with self._connect(s.pg_database) as conn:
                row = conn.execute(
                    "SELECT extversion, current_setting('timescaledb.license') "
                    "FROM pg_extension WHERE extname = 'timescaledb'"
                ).fetchone()
        except psycopg.Error as exc:
            raise ServiceError(f"cannot query: {exc}") from exc
        if row is None:
            raise ServiceError(f"timescaledb extension missing in database {s.pg_database}")
        return f"timescaledb {row[0]} ({row[1]} edition) on {s.pg_host}:{s.pg_port}"
