"""Fixtures of the client tests: the real attention_server on a free loopback port.

The server binary is $ATTENTION_SERVER (default build/bin/attention_server,
relative to the repository root). One server serves the whole session; it is
stopped with SIGTERM at the end, and a drain that does not exit 0 fails it.
"""

import os
import re
import signal
import subprocess
import tempfile
import time
import zlib

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_report_header(config):
    import attention_client
    return "attention_client: %s" % os.path.dirname(attention_client.__file__)


class Server:
    """The attention_server binary on a free loopback port."""

    def __init__(self, binary):
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--log_calls=false"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.port = self._wait_for_port(timeout=30)
        self.target = "127.0.0.1:%d" % self.port

    def _read_log(self):
        self.log.seek(0)
        return self.log.read()

    def _wait_for_port(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"\(port (\d+)\)", self._read_log())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError("attention_server exited with %d:\n%s"
                                   % (self.proc.returncode, self._read_log()))
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("attention_server printed no port within %d s:\n%s"
                           % (timeout, self._read_log()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("ATTENTION_SERVER") or os.path.join(
        REPO, "build", "bin", "attention_server")
    if not os.path.isabs(binary):
        binary = os.path.join(REPO, binary)
    if not os.access(binary, os.X_OK):
        pytest.fail("no server binary at %s (set ATTENTION_SERVER)" % binary)
    s = Server(binary)
    yield s
    rc = s.stop()
    assert rc == 0, "attention_server exited with %r after SIGTERM" % rc  # a clean drain


@pytest.fixture(scope="session")
def client(server):
    from attention_client import AttentionClient
    c = AttentionClient(server.target, timeout=60)
    c.wait_for_ready(timeout=15)
    yield c
    c.close()


@pytest.fixture
def rng(request):
    """A generator seeded by the test's name: each test draws its own numbers."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
