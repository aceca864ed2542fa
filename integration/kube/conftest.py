"""The `kube` fixture: one real single-node Kubernetes (node.py) for the session.

It starts the node and tears it down at the end of the session, asserting that nothing
of it is left on the host. With ZTUNNEL_KUBE_REUSE=1 a node that is already up
(`python3 integration/kube/node.py up`) is used as it is and left running for its
owner's `down`. A node that is up without ZTUNNEL_KUBE_REUSE=1 is not touched: start()
refuses (run `down` first)."""
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ambient import Capture  # noqa: E402
from node import KubeNode  # noqa: E402


@pytest.fixture(scope="session")
def kube():
    node = KubeNode()
    if os.environ.get("ZTUNNEL_KUBE_REUSE") == "1" and node.is_up():
        node._log(f"reusing the node that is up (state dir {node.state_dir})")
        yield node
        return
    node.start()
    try:
        yield node
    finally:
        node.stop()
        left = node.leftovers()
        assert not left, "the node left things behind:\n" + "\n".join(left)


@pytest.fixture
def kube_ns(kube, request):
    """A fresh namespace for one test, deleted (with its pods) afterwards without
    waiting (the namespace controller takes ~8 s; stop() deletes whatever is left)."""
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40]
    name = name.rstrip("-") + f"-{int(time.time() * 1000) % 100000}"
    kube.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while kube.api("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] != 200:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {name}"
        time.sleep(0.1)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def no_stray_captures():
    """A test that fails between a capture's start and stop must not leave tcpdump."""
    yield
    while Capture.live:
        c = Capture.live.pop()
        c.proc.kill()
        c.proc.wait(timeout=10)
