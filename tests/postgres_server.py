"""A throw-away PostgreSQL server for tests: Debian's binaries, a temporary data folder, a free port on 127.0.0.1.

``start_server()`` runs ``initdb`` and ``pg_ctl start`` from ``/usr/lib/postgresql/*/bin`` (or PATH); the server
refuses to run as root, so as root it runs as the unprivileged ``postgres`` user. Authentication is scram with a
generated password, so a test reads it the way a user's job does: from ``PGPASSWORD`` (the URI has none).
``ServerUnavailable`` says in one line what is missing (a test turns it into a skip).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message names the missing binary, package or user."""


@dataclass
class PostgresServer:
    """A running server: ``uri`` has no password; ``password`` goes in ``PGPASSWORD``."""

    data_dir: Path
    port: int
    user: str
    password: str
    bin_dir: Path
    run_as: str | None

    @property
    def uri(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password}

    def stop(self) -> None:
        _run([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-s"], self.run_as, check=False)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _bin_dir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    raise ServerUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], run_as: str | None, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, user=run_as, capture_output=True, text=True, check=check, timeout=120, **kwargs)


def start_server() -> PostgresServer:
    """Start a fresh server (a few seconds); raises :class:`ServerUnavailable` when it cannot."""
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        raise ServerUnavailable("package adbc-driver-postgresql is not installed (the `database` extra: make env)") from None
    bin_dir = _bin_dir()
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServerUnavailable("running as root and there is no `postgres` user to run the server as") from None
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="custbase-pg-"))
    data_dir = root / "data"
    password = secrets.token_hex(12)
    password_file = root / "password"
    password_file.write_text(password + "\n")
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chown(password_file, entry.pw_uid, entry.pw_gid)
    user = "custbase"
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", user, "--auth=scram-sha-256", f"--pwfile={password_file}",
              "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], run_as)
        port = _free_port()
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off -c full_page_writes=off"
        _run([str(bin_dir / "pg_ctl"), "start", "-D", str(data_dir), "-w", "-t", "60", "-s", "-l", str(root / "server.log"),
              "-o", options], run_as)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        detail = (getattr(err, "stderr", None) or str(err)).strip().splitlines()
        shutil.rmtree(root, ignore_errors=True)
        raise ServerUnavailable(f"PostgreSQL did not start: {detail[-1] if detail else err}") from None
    password_file.unlink()
    return PostgresServer(data_dir=data_dir, port=port, user=user, password=password, bin_dir=bin_dir, run_as=run_as)
