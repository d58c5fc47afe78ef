"""A throwaway PostgreSQL cluster for the service tests (what .ci/run also starts, in bash).

``DELEVERAGE_TEST_PG_URL`` names a server to use (``DELEVERAGE_TEST_PG_DATA`` its data directory,
so a test can restart it with pg_ctl). Without it, and when Debian's binaries are installed
(``/usr/lib/postgresql/<v>/bin``), a cluster is made with initdb in a temporary directory and started
on a unix socket there — as the ``postgres`` user when running as root, since PostgreSQL refuses to
run as root. Otherwise the tests are skipped with a message.
"""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ENV_URL, ENV_DATA = "DELEVERAGE_TEST_PG_URL", "DELEVERAGE_TEST_PG_DATA"


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class Cluster:
    """A running server: its admin URL, and (when we may restart it) its data dir and binaries."""

    url: str
    data: Path | None
    bindir: Path | None

    def restart(self, down_s: float = 0.0) -> None:
        """pg_ctl stop (fast), wait ``down_s``, start: every connection of a client breaks."""
        if self.data is None:
            raise RuntimeError("cannot restart a server given only by URL")
        pg_ctl = str((self.bindir or Path()) / "pg_ctl") if self.bindir else shutil.which("pg_ctl") or "pg_ctl"
        subprocess.run(_as_owner([pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"]), check=True,
                       capture_output=True, timeout=60)
        time.sleep(down_s)
        subprocess.run(_as_owner([pg_ctl, "-D", str(self.data), "-w", "-l", str(self.data / "log"), "start"]),
                       check=True, capture_output=True, timeout=60)

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database for one test; its URL."""
        import psycopg  # noqa: PLC0415

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        try:
            yield _with_database(self.url, name)
        finally:
            with contextlib.suppress(Exception), psycopg.connect(self.url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head, _, _db = base.rpartition("/")
    return f"{head}/{name}" + (f"?{query}" if query else "")


def start_cluster() -> tuple[Cluster, Path] | None:
    """initdb + pg_ctl start in a temporary directory; None when the binaries are missing."""
    bindir = pg_bin()
    if bindir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="deleverage-pg-"))
    data = root / "data"
    data.mkdir()
    user = "postgres" if os.geteuid() == 0 else getpass.getuser()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
                              "--no-sync"]), check=True, capture_output=True, timeout=120)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{root}'\nfsync = on\n")
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"), "start"]),
                   check=True, capture_output=True, timeout=120)
    return Cluster(f"postgresql://{user}@/postgres?host={root}", data, bindir), root


def stop_cluster(cluster: Cluster, root: Path) -> None:
    assert cluster.bindir is not None and cluster.data is not None
    subprocess.run(_as_owner([str(cluster.bindir / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "-w",
                              "stop"]), capture_output=True, timeout=60)
    shutil.rmtree(root, ignore_errors=True)


def reachable(url: str) -> str | None:
    """None when ``url`` answers, else why not."""
    try:
        import psycopg  # noqa: PLC0415
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None
