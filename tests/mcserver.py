"""Real memcached servers for the tests (and the memcached benchmark group): started on
free loopback ports or unix sockets, stopped, killed, paused and restarted on demand.

``shared()`` gives servers that live for the whole pytest process (the conformance
suite needs their addresses when its module is imported); fixtures in
``tests/conftest.py`` start private ones for tests that kill or pause them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class MemcachedServer:
    """One memcached process. ``location`` is what a Django LOCATION names it by."""

    def __init__(
        self,
        *,
        unix: bool = False,
        host: str = "127.0.0.1",
        memory_mb: int = 64,
        item_size: str | None = None,
        extra: tuple[str, ...] = (),
        cpu: int | None = None,
    ) -> None:
        self.unix = unix
        self.cpu = cpu  # run every memcached thread on this CPU (None: wherever)
        self.host = host
        self.port = 0 if unix else free_port(host)
        self.socket_path = ""
        if unix:
            self._dir = tempfile.mkdtemp(prefix="nc-mc-")
            self.socket_path = os.path.join(self._dir, "memcached.sock")
        self.memory_mb = memory_mb
        self.item_size = item_size
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def location(self) -> str:
        return f"unix:{self.socket_path}" if self.unix else self.address

    @property
    def address(self) -> str:
        """How the client names the server in stats and errors."""
        if self.unix:
            return self.socket_path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _command(self) -> list[str]:
        cmd = [MEMCACHED, "-m", str(self.memory_mb), "-t", "1", "-c", "1024"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        if self.unix:
            cmd += ["-s", self.socket_path, "-a", "0700"]
        else:
            cmd += ["-l", self.host, "-p", str(self.port), "-U", "0"]
        if self.item_size:
            cmd += ["-I", self.item_size]
        return cmd + list(self.extra)

    def start(self, timeout: float = 10.0) -> MemcachedServer:
        if self.unix and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        cpu = self.cpu
        self.proc = subprocess.Popen(
            self._command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memcached exited at start: {self._command()}")
            if self.answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"memcached did not start: {self._command()}")

    def connect(self, timeout: float = 2.0) -> socket.socket:
        """A plain connection to the server, for talking to it directly."""
        if not self.unix:
            return socket.create_connection((self.host, self.port), timeout=timeout)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.socket_path)
        except OSError:
            s.close()
            raise
        return s

    def answers(self) -> bool:
        try:
            with self.connect(0.5) as s:
                s.sendall(b"version\r\n")
                return s.recv(64).startswith(b"VERSION")
        except OSError:
            return False

    def command(self, line: str) -> bytes:
        """Sends one text-protocol command on a connection of its own; the raw reply."""
        with self.connect() as s:
            s.sendall(line.encode() + b"\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk
                if data.startswith(b"VALUE"):
                    if data.endswith(b"END\r\n"):
                        return data
                elif data.endswith(b"\r\n"):
                    return data

    def raw_get(self, key: str) -> tuple[int, bytes] | None:
        """(flags, bytes) of key as the server holds it, or None."""
        reply = self.command(f"get {key}")
        if not reply.startswith(b"VALUE"):
            return None
        header, _, rest = reply.partition(b"\r\n")
        flags, length = header.split()[2:4]
        return int(flags), rest[: int(length)]

    def ttl(self, key: str) -> int | None:
        """Seconds the server will keep key (-1: for ever), None if it has no such key."""
        reply = self.command(f"mg {key} t").decode()
        if not reply.startswith("HD"):
            return None
        return int(reply.split()[1][1:])

    def stats(self) -> dict[str, str]:
        lines = self.command("stats").decode().split("\r\n")
        return {p[1]: p[2] for p in (line.split(" ", 2) for line in lines) if len(p) == 3}

    def wait_for_tick(self, timeout: float = 2.0) -> None:
        """Returns just after the server's clock has moved to its next second.

        memcached counts time in whole seconds of its own (``uptime`` in ``stats``), so
        an item set with a 3 s timeout late in one of those seconds is gone a little
        over 2 s later. A test that sleeps against a timeout starts here to get the
        whole margin it was written with."""
        start = self.stats()["uptime"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats()["uptime"] != start:
                return
            time.sleep(0.002)
        raise RuntimeError("memcached's clock did not move")

    def flush(self) -> None:
        self.command("flush_all")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """Stops the process (SIGSTOP) and waits until the kernel shows it stopped:
        the signal is delivered asynchronously, and a request sent meanwhile would
        still be answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    return
            time.sleep(0.005)
        raise RuntimeError("memcached did not stop")

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> MemcachedServer:
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
        self.stop()
        if self.unix:
            shutil.rmtree(Path(self.socket_path).parent, ignore_errors=True)


_shared: dict[str, MemcachedServer] = {}


def shared(name: str = "main", *, unix: bool = False) -> MemcachedServer:
    """A server kept for the whole process, started on first use."""
    server = _shared.get(name)
    if server is None or not server.answers():
        server = MemcachedServer(unix=unix).start()
        _shared[name] = server
    return server


@atexit.register
def _stop_shared() -> None:
    for server in _shared.values():
        server.cleanup()
