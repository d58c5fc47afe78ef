"""Fixtures of the service tests: a PostgreSQL cluster (see pg_cluster.py), skipped with a message."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deleverage.service.store import redact

from .pg_cluster import ENV_DATA, ENV_URL, Cluster, pg_bin, reachable, start_cluster, stop_cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    url = os.environ.get(ENV_URL)
    if url:
        why = reachable(url)
        if why is not None:
            pytest.skip(f"{ENV_URL}={redact(url)} is not reachable: {why}")
        data = os.environ.get(ENV_DATA)
        yield Cluster(url, Path(data) if data else None, pg_bin())
        return
    if reachable("postgresql://localhost/postgres") == "psycopg is not installed":
        pytest.skip("psycopg is not installed")
    try:
        started = start_cluster()
    except Exception as exc:  # noqa: BLE001 — any failure to start one is a reason to skip, said
        pytest.skip(f"no PostgreSQL: starting a throwaway cluster failed ({exc}); set {ENV_URL}")
    if started is None:
        pytest.skip(f"no PostgreSQL: set {ENV_URL}, or install Debian's postgresql (.ci/run does)")
    cluster, root = started
    try:
        yield cluster
    finally:
        stop_cluster(cluster, root)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh database of the cluster for one test."""
    with pg_cluster.database() as url:
        yield url


@pytest.fixture(scope="module")
def private_pg() -> Iterator[Cluster]:
    """A cluster of this test module alone: the tests that restart the database must not cut the
    connections of tests running beside them on a shared server."""
    if reachable("postgresql://localhost/postgres") == "psycopg is not installed":
        pytest.skip("psycopg is not installed")
    try:
        started = start_cluster()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no PostgreSQL to restart: starting a throwaway cluster failed ({exc})")
    if started is None:
        pytest.skip("no PostgreSQL binaries to start a cluster that may be restarted (install Debian's postgresql)")
    cluster, root = started
    try:
        yield cluster
    finally:
        stop_cluster(cluster, root)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the dashboard's end-to-end screenshots are (a test records them as ``screenshots``)."""
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        for name, value in getattr(report, "user_properties", ()):
            if name == "screenshots" and report.when == "call":
                terminalreporter.write_line(f"dashboard screenshots: {value}")
