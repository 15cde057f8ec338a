"""Featurize in a child process, so that one structure can be stopped after a time limit.

A featurizer stuck on a pathological structure cannot be interrupted inside the process
running it (Dask runs tasks in threads; signals reach only the main thread). Here the
featurizers run in a child process fed one structure at a time over a pipe; when a
structure exceeds the limit the child is killed, that structure gets an error row, and a
new child takes the rest. One child per worker process and featurization is kept alive
between batches, so the start-up (imports, featurizer set-up) is paid once.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from typing import IO, Any

from matscreen.tasks.errors import FeaturizationError, RecordError
from matscreen.tasks.hashing import canonical_json

_HEADER = struct.Struct("!Q")
STARTUP_LIMIT_S = 300.0


def send(stream: IO[bytes], message: Any) -> None:
    """Write one length-prefixed pickled message and flush."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _read_exact(fd: int, size: int, deadline: float) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            return None
        chunk = os.read(fd, remaining)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, timeout_s: float) -> Any:
    """Read one message from ``fd``; return ``TimeoutError()`` if none arrives in time.

    Raises
    ------
    EOFError
        If the other side closed the pipe (the child died).
    """
    deadline = time.monotonic() + timeout_s
    header = _read_exact(fd, _HEADER.size, deadline)
    if header is None:
        return TimeoutError()
    body = _read_exact(fd, _HEADER.unpack(header)[0], deadline + 60.0)
    if body is None:
        return TimeoutError()
    return pickle.loads(body)


def spawn() -> subprocess.Popen[bytes]:
    """Start a featurizer child; it imports its libraries, then waits for a featurization."""
    return subprocess.Popen(
        [sys.executable, "-m", "matscreen.tasks.featurize.child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


#: A child started ahead of need (see :func:`prewarm`), not yet given a featurization.
_SPARE: list[subprocess.Popen[bytes]] = []
#: The process the children above belong to. A forked copy of this process must not talk
#: to its parent's children over the inherited pipes: it starts its own.
_OWNER = os.getpid()


def _forget_inherited_children() -> None:
    global _OWNER
    if os.getpid() != _OWNER:
        _CHILDREN.clear()
        _SPARE.clear()
        _OWNER = os.getpid()


def prewarm() -> None:
    """Start one child now, so that its imports overlap other work (e.g. at worker start)."""
    _forget_inherited_children()
    if not _SPARE:
        _SPARE.append(spawn())


class ChildFeaturizer:
    """A child process that featurizes one structure at a time, with a time limit each.

    Parameters
    ----------
    config
        The featurization description (see :func:`featurization_config`).
    time_limit_s
        Seconds one structure may take before its child is killed.
    memory_mb
        Heap limit of the child in MiB (0: none).
    """

    def __init__(self, config: dict[str, Any], time_limit_s: float, memory_mb: int) -> None:
        self.config = config
        self.time_limit_s = time_limit_s
        self.memory_mb = memory_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._labels: list[str] | None = None

    def labels(self) -> list[str]:
        """The feature labels, as the child's featurizers give them (starts the child)."""
        if self._process is None:
            self._process = self._start()
        assert self._labels is not None
        return self._labels

    def _start(self) -> subprocess.Popen[bytes]:
        process = _SPARE.pop() if _SPARE else spawn()
        assert process.stdin is not None and process.stdout is not None
        send(process.stdin, (self.config, self.memory_mb))
        try:
            reply = receive(process.stdout.fileno(), STARTUP_LIMIT_S)
        except EOFError:
            reply = ("fatal", f"featurizer process exited with code {process.wait()}")
        if isinstance(reply, TimeoutError) or reply[0] != "ready":
            self._kill(process)
            message = "did not start in time" if isinstance(reply, TimeoutError) else reply[1]
            raise FeaturizationError(f"featurizer process: {message}")
        self._labels = list(reply[1])
        return process

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        process.kill()
        process.wait()

    def featurize(self, structure: dict[str, Any]) -> list[float]:
        """Featurize one structure (a ``Structure.as_dict()``) in the child.

        Raises
        ------
        RecordError
            If the structure fails, exceeds the time limit, or kills the child.
        FeaturizationError
            If the child cannot start at all.
        """
        if self._process is None:
            self._process = self._start()
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        try:
            send(process.stdin, structure)
            reply = receive(process.stdout.fileno(), self.time_limit_s)
        except (EOFError, BrokenPipeError):
            code = process.wait()
            self._process = None
            raise RecordError(f"featurizer process died (exit code {code})") from None
        if isinstance(reply, TimeoutError):
            self._kill(process)
            self._process = None
            raise RecordError(f"time limit of {self.time_limit_s:g} s exceeded")
        if reply[0] == "ok":
            return list(reply[1])
        raise RecordError(reply[1])

    def close(self) -> None:
        """Stop the child process."""
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill(self._process)
            self._process = None


_CHILDREN: dict[tuple[str, float, int], ChildFeaturizer] = {}


def child_featurizer(
    config: dict[str, Any], time_limit_s: float, memory_mb: int
) -> ChildFeaturizer:
    """The child process of this worker for a featurization and limits, started on first use."""
    _forget_inherited_children()
    key = (canonical_json(config), time_limit_s, memory_mb)
    if key not in _CHILDREN:
        _CHILDREN[key] = ChildFeaturizer(config, time_limit_s, memory_mb)
    return _CHILDREN[key]


@atexit.register
def _close_children() -> None:
    for child in _CHILDREN.values():
        child.close()
    _CHILDREN.clear()
    for process in _SPARE:
        process.kill()
    _SPARE.clear()
