"""A redis-server of a test's own, on a free port, which the test may stop and start
(never the machine's shared broker)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import free_port


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return value


class RedisServer:
    """A redis-server of the test's own (no persistence: a restart empties the stream)."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is missing: ./dev test installs it (apt-get install redis-server)"
            )
        self.binary = binary
        self.directory = directory
        self.host = host  # another address for test hosts in network namespaces
        self.port = free_port()
        self.url = f"redis://{host}:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                # bound to the test hosts' bridge only: no password, no protection
                *(["--protected-mode", "no"] if self.host != "127.0.0.1" else []),
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(host=self.host, port=self.port)
        wait_for(lambda: _pings(client), 10, "redis-server to start")
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except OSError:
        return False
    except Exception:  # redis.ConnectionError
        return False
