"""Shared fixtures. Integration tests need root (namespaces, iptables); without it they
fail rather than skip, and any skip fails the session: a skipped check is not a pass."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ztnet  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def require_root():
    assert os.geteuid() == 0, "integration tests need root (network namespaces, iptables)"


@pytest.fixture
def topo(request):
    tag = "it" + str(abs(hash(request.node.name)) % 1000)
    with ztnet.Topology(tag) as t:
        yield t


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("FAILED: tests were skipped; skipped tests do not count as passed")
        session.exitstatus = 1
