"""A real ``redis-server`` subprocess on a free port, for integration and fault tests.

:class:`RedisServer` can run without persistence (the default, fastest) or with an
append-only file in a directory of its own, and can be stopped, killed and restarted on the
same port with the same data directory, so a test can take Redis away under a running worker
and bring it back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

#: How long a server may take to answer PING after being started.
START_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServerError(RuntimeError):
    """The test Redis could not be started: the run must fail, never skip."""


class RedisServer:
    """One ``redis-server`` process.

    Args:
        directory: working directory (its log, pid and, with ``appendonly``, its data).
        port: TCP port; a free one is picked when None.
        appendonly: persist with an append-only file (``appendfsync always``) so a restart
            keeps every acknowledged write; otherwise nothing is ever saved.
        binary: the ``redis-server`` executable.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        binary: str = "redis-server",
    ) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.appendonly = appendonly
        self.binary = shutil.which(binary) or binary
        self.log_path = directory / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:<port>/<db>``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """A new binary-safe client for this server."""
        return redis.Redis.from_url(self.url(db), socket_timeout=5, socket_connect_timeout=2)

    def command(self) -> list[str]:
        """The command line that starts this server."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log_path),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING.

        Raises:
            RedisServerError: it exited or did not answer within :data:`START_TIMEOUT_S`.
        """
        if self.running:
            raise RedisServerError(f"redis-server on port {self.port} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            raise RedisServerError(f"Cannot run {self.binary!r}: {exc}") from exc
        deadline = time.monotonic() + START_TIMEOUT_S
        client = self.client()
        try:
            while True:
                if self.process.poll() is not None:
                    raise RedisServerError(
                        f"redis-server exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RedisServerError(f"redis-server did not answer PING:\n{self.log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (SIGTERM; with appendonly the file is flushed), else SIGKILL."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, with whatever was written to the append-only file so far."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, kill: bool = False) -> RedisServer:
        """Stop (or kill) and start again on the same port and directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def __repr__(self) -> str:
        state = f"pid={self.process.pid}" if self.process is not None else "stopped"
        return f"RedisServer(port={self.port}, appendonly={self.appendonly}, {state})"


def external_url_from_env(name: str = "ARVO_TEST_REDIS_URL") -> str | None:
    """A Redis to use instead of starting one (it will be FLUSHALLed), or None."""
    return os.environ.get(name) or None


def start_or_fail(server: RedisServer, needed_by: str) -> RedisServer:
    """Start ``server``; when it cannot start, fail the test (never a skip) saying why."""
    import pytest

    try:
        return server.start()
    except RedisServerError as exc:
        pytest.fail(f"{needed_by} cannot start a redis-server: {exc}", pytrace=False)
