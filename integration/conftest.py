"""Shared fixtures. Integration tests need root (namespaces, iptables); without it they
fail rather than skip, and any skip fails the session: a skipped check is not a pass.

Under the sanitizer build (ZTUNNEL_SANITIZER_DIR set by CTest, see CMakeLists.txt) a
sanitizer report from any process of a test fails that test, whatever the test itself
checks: ASan and LSan write their reports as files into that directory (log_path), and
UBSan, which in GCC's combined runtime always writes to stderr, is found in the test's
captured output and in the process logs (*.log) under its tmp_path."""
import os
import re
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
    if SANITIZER_DIR is not None:
        # What no test's teardown saw: module and session fixtures, late exits.
        found = _new_reports()
        found += _log_hits(session.config._tmp_path_factory.getbasetemp())
        if found:
            text = "\n\n".join(found)
            if reporter is not None:
                reporter.write_line(f"FAILED: sanitizer report(s) outside any test:\n{text}")
            else:
                print(text, file=sys.stderr)
            session.exitstatus = 1


# ---- Sanitizer reports (the ASan + UBSan run) ----

SANITIZER_DIR = Path(os.environ["ZTUNNEL_SANITIZER_DIR"]) if os.environ.get(
    "ZTUNNEL_SANITIZER_DIR") else None
REPORT = re.compile(rb"runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                    rb"SUMMARY: (?:Address|UndefinedBehavior|Leak)Sanitizer")
_seen_reports: set[Path] = set()
_seen_logs: set[Path] = set()


def _new_reports() -> list[str]:
    """Report files written since the last call, with their content."""
    out = []
    for f in sorted(SANITIZER_DIR.glob("*")):
        if f not in _seen_reports:
            _seen_reports.add(f)
            out.append(f"{f}:\n{f.read_text(errors='replace')[-8000:]}")
    return out


def _log_hits(root: Path) -> list[str]:
    """Sanitizer lines in the *.log files under root (each file checked once)."""
    out = []
    for f in sorted(root.rglob("*.log")):
        if f in _seen_logs or not f.is_file():
            continue
        _seen_logs.add(f)
        data = f.read_bytes()
        m = REPORT.search(data)
        if m:
            start = data.rfind(b"\n", 0, m.start()) + 1
            out.append(f"{f}:\n{data[start:start + 6000].decode(errors='replace')}")
    return out


def pytest_sessionstart(session):
    if SANITIZER_DIR is not None:
        SANITIZER_DIR.mkdir(parents=True, exist_ok=True)
        for old in SANITIZER_DIR.glob("*"):
            old.unlink()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if SANITIZER_DIR is None or call.when != "teardown":
        return
    found = _new_reports()
    tmp = item.funcargs.get("tmp_path")
    if tmp is not None:
        found += _log_hits(Path(tmp))
    # The teardown report carries the output captured in every phase of the test, which
    # includes that of child processes writing to an inherited stdout or stderr.
    for name, text in report.sections:
        if "Captured" in name and REPORT.search(text.encode(errors="replace")):
            found.append(f"{name}:\n{text[-6000:]}")
    if found:
        report.outcome = "failed"
        report.longrepr = "sanitizer report(s) during this test:\n\n" + "\n\n".join(found)
