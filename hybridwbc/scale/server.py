"""A shared MLflow tracking server on PostgreSQL, on loopback: ``make mlflow-server``.

    python -m hybridwbc.scale.server [--dir .mlflow-server] [--port 5000] [--pg-port 5433]

starts (1) a PostgreSQL server (Debian's ``postgresql`` package; its binaries are found under
``/usr/lib/postgresql/<version>/bin`` or on ``PATH``) on a database folder ``<dir>/postgres`` it creates on
first use, listening on 127.0.0.1 only, with a database ``mlflow``; and (2) ``mlflow server`` with that
database as its backend store and ``<dir>/artifacts`` as the artifact root it serves to clients
(``--artifacts-destination``), on http://127.0.0.1:<port>. Runs then log with
``tracking.uri=http://127.0.0.1:<port>`` exactly as with sqlite: tables (``python -m hybridwbc.tables
--uri http://...``), the model registry and serving (``MLFLOW_TRACKING_URI=http://...``) read the server.
Ctrl-C stops both. For a team, run it on a shared host behind your institution's authentication; this
command binds loopback only.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hybridwbc.cli import run_cli
from hybridwbc.errors import ConfigError

__all__ = ["free_port", "wait_http", "postgres_bin", "Postgres", "TrackingServer", "main"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200 (the server is up); the cap only bounds a server that never starts.

    Raises
    ------
    ConfigError
        If ``proc`` exits first, or ``url`` does not answer within ``timeout`` seconds (with the log's tail).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.is_file() else ""
    raise ConfigError(f"The server behind {url} did not come up (exit status "
                      f"{None if proc is None else proc.poll()}). Its log ends:\n{tail}")


def postgres_bin(name: str) -> str:
    """The path of PostgreSQL program ``name`` (``initdb``, ``pg_ctl``, ``createdb``).

    Raises
    ------
    ConfigError
        If PostgreSQL is not installed.
    """
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True) or [shutil.which(name)]
    if not found[0]:
        raise ConfigError(f"PostgreSQL's {name!r} was not found. Fix: apt-get install postgresql (Debian/Ubuntu), "
                          "or put PostgreSQL's bin folder on PATH.")
    return found[0]


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: there, run ``cmd`` as the ``postgres`` user (Debian's package makes it)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Postgres:
    """A PostgreSQL server on 127.0.0.1:``port`` with its data in ``folder`` (created on first start)."""

    folder: Path
    port: int
    user: str = "mlflow"
    database: str = "mlflow"
    started: bool = field(default=False, init=False)

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> "Postgres":
        """Create the database folder (``<folder>/pgdata``, owned by ``postgres`` when run as root) on first use,
        start the server and create the database; returns ``self``.

        Raises
        ------
        ConfigError
            If PostgreSQL is missing or a PostgreSQL command fails (with its message and the log's tail).
        """
        data = self.folder / "pgdata"
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the postgres user must reach its folder: keep the folder's parents traversable
            shutil.chown(self.folder, "postgres")
        if not (data / "PG_VERSION").is_file():
            self._run([postgres_bin("initdb"), "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8"])
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.folder}"
        self._run([postgres_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.folder / "postgres.log"),
                   "-w", "-t", "120", "start"])
        self.started = True
        probe = subprocess.run([postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                                "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{self.database}'"],
                               capture_output=True, text=True)
        if probe.stdout.strip() != "1":
            self._run([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                       self.database])
        return self

    def stop(self) -> None:
        if self.started:
            subprocess.run(_as_owner([postgres_bin("pg_ctl"), "-D", str(self.folder / "pgdata"), "-m", "fast",
                                      "-w", "stop"]), capture_output=True)
            self.started = False

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(_as_owner(cmd), capture_output=True, text=True)
        if done.returncode:
            log = self.folder / "postgres.log"
            tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
            raise ConfigError(f"PostgreSQL command {Path(cmd[0]).name} failed ({done.returncode}): "
                              f"{(done.stderr or done.stdout).strip()[-1500:]}\n{tail}")


@dataclass
class TrackingServer:
    """``mlflow server`` on 127.0.0.1:``port`` with ``backend_uri`` and ``<folder>/artifacts`` served to clients."""

    backend_uri: str
    folder: Path
    port: int
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> "TrackingServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "mlflow-server.log"
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", str((self.folder / "artifacts").resolve()),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(self.uri + "/health", self.proc, timeout, log)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def main(argv: list[str] | None = None) -> int:
    """``make mlflow-server``: start PostgreSQL and the MLflow server, wait for Ctrl-C, stop both."""
    ap = argparse.ArgumentParser(prog="python -m hybridwbc.scale.server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=".mlflow-server", help="database, artifacts and logs (default .mlflow-server)")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--pg-port", type=int, default=5433)
    args = ap.parse_args(argv)

    def serve() -> None:
        folder = Path(args.dir).resolve()
        pg = Postgres(folder / "postgres", args.pg_port).start()
        server = TrackingServer(pg.uri, folder, args.port)
        try:
            server.start()
            print(f"hybridwbc: MLflow server on {server.uri} (PostgreSQL {pg.uri}, artifacts {folder / 'artifacts'}).\n"
                  f"  log runs: python -m hybridwbc.run +experiment=all_hem tracking.uri={server.uri}\n"
                  f"  tables:   python -m hybridwbc.tables all_hem --uri {server.uri}\n"
                  "  Ctrl-C stops it.", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            server.stop()
            pg.stop()

    return run_cli(serve, KeyboardInterrupt)


if __name__ == "__main__":
    raise SystemExit(main())
