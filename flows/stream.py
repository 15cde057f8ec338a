"""Reading a campaign's streamed sources ahead of the flow, in a process of their own.

Making a candidate record is pure Python: decorating a prototype (or parsing a file row,
or a provider's document), its reduced formula, the hash of its structure and the
canonical JSON the catalog stores of it. For a decorated candidate that is a third of
what the flow's process spends on it, and the flow's process is what a large screen waits
for. So the sources are read by a child process, which sends the records with their
hashes and catalog text already made, while the flow records, deduplicates and predicts
the chunk before. The child sends pieces of :data:`PIECE` items, each pickled to a file
of a scratch folder (so only a piece at a time is held in its memory, and a child killed
in the middle of a message leaves no half of it to read), and the end of every chunk of
the campaign's chunk size; the flow puts the pieces of a chunk together. At most ``depth``
chunks' worth of pieces (at least ``depth`` pieces) wait on disk.

Given :class:`~matscreen.tasks.chunk_keys.ChunkKeys`, the child also names each chunk (in
the chunk's end) by a key chained over every chunk before it. A chunk of a source that
plans its items (prototype decorations) is keyed by its plans before any record is built,
and when an earlier, killed run finished it, the child sends it as planned (its item
count, no record): the flow takes that run's result, and building it is skipped.

The child reads the sources one after the other, in the campaign's order, exactly as the
flow's process would (same rows, same failures, same chunks, same snapshot). An error of
the read (a :class:`~matscreen.tasks.errors.SourceError`: a missing file, a server
refusing the key) reaches the flow as that error; a child that dies (killed, out of
memory) is reported as such, naming the source it was reading.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import queue
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matscreen.tasks.chunk_keys import ChunkDigest, ChunkKeys, plan_key
from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import Item, open_source
from matscreen.tasks.sources.records import RecordFailure, SourceSnapshot, StructureRecord

#: Seconds between two checks that the reading process is still alive.
POLL_SECONDS = 1.0
#: Items (records and failed rows) the reading process sends at a time.
PIECE = 1_000


@dataclass(frozen=True)
class Chunk:
    """The next ``records`` and ``failures`` of the source at ``source`` (its position in
    the list read), and the chunk's ``key`` when the read was given :class:`ChunkKeys`.

    ``planned`` > 0: a chunk of that many items that an earlier run finished (its key is
    among :attr:`ChunkKeys.finished`), planned but not built; ``records`` and ``failures``
    are then empty.
    """

    source: int
    records: list[StructureRecord]
    failures: list[RecordFailure]
    key: str | None = None
    planned: int = 0


@dataclass(frozen=True)
class _ChunkEnd:
    """The items sent since the last chunk end make a chunk, named ``key``."""

    key: str | None


@dataclass(frozen=True)
class Failed:
    """The read ended with ``error``; ``trace`` is its traceback in the reading process."""

    error: Exception
    trace: str


class RemoteTraceback(Exception):
    """The traceback of an error in the reading process (the cause of the error raised
    here, shown with ``--debug``)."""

    def __str__(self) -> str:
        return f"\n\n{self.args[0]}"


@dataclass(frozen=True)
class ReadEnd:
    """The read of the source at ``source`` has ended; its ``snapshot``."""

    source: int
    snapshot: SourceSnapshot


def prepared(record: StructureRecord) -> StructureRecord:
    """The record with its structure hash and catalog text made (kept with it)."""
    _ = record.structure_sha256, record.fields_json
    return record


def read_ahead(
    sources: Sequence[Any],
    state_dir: Path | None,
    size: int,
    keys: ChunkKeys | None = None,
    depth: int = 2,
    piece: int = PIECE,
) -> Generator[Chunk | ReadEnd, None, None]:
    """Read ``sources`` in a child process: every chunk of ``size`` items (records and
    failures, as :func:`~matscreen.tasks.sources.base.iter_chunks` makes them) in turn,
    and after each source's last chunk its :class:`ReadEnd`. The child sends ``piece``
    items at a time.

    With ``keys``, the child names every chunk by a key chained from ``keys.first``: a
    source that plans its items (:attr:`~matscreen.tasks.sources.base.SourceRead.plannable`)
    by the plans (:func:`~matscreen.tasks.chunk_keys.plan_key`), and a chunk whose key
    is among ``keys.finished`` is sent as planned, none of its records built; any other
    source by its records (:func:`~matscreen.tasks.chunk_keys.chunk_key`).

    Leaving the loop early (or an error in it) stops the child and removes its folder.

    Raises
    ------
    SourceError
        If a source cannot be read, or the reading process dies.
    """
    context = multiprocessing.get_context("spawn")
    channel = context.Queue(maxsize=max(1, depth * -(-size // piece)))
    folder = Path(tempfile.mkdtemp(prefix="matscreen-read-"))
    process = context.Process(
        target=_serve,
        args=(list(sources), state_dir, size, piece, keys, folder, channel),
        name="matscreen-source-reader",
        daemon=True,
    )
    process.start()
    reading = 0
    items: list[Item] = []
    try:
        while True:
            message = _receive(process, channel, folder, sources, reading)
            if message is None:
                return
            if isinstance(message, ReadEnd):
                reading = message.source + 1
                yield message
            elif isinstance(message, _ChunkEnd):
                records = [i for i in items if isinstance(i, StructureRecord)]
                failures = [i for i in items if not isinstance(i, StructureRecord)]
                yield Chunk(reading, records, failures, message.key)
                items = []
            elif isinstance(message, Chunk):  # planned, not built
                yield message
            else:
                items += message
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
        channel.close()
        shutil.rmtree(folder, ignore_errors=True)


def _receive(process: Any, channel: Any, folder: Path, sources: Sequence[Any], reading: int) -> Any:
    """The child's next message: a piece (a list of items), a chunk's end, a planned chunk,
    a ReadEnd, or None at the end.

    Raises
    ------
    Exception
        The error the child sent; SourceError if it died.
    """
    while True:
        try:
            number = channel.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if process.is_alive():
                continue
            try:  # it may have sent its last messages just before it ended
                number = channel.get(timeout=POLL_SECONDS)
            except queue.Empty:
                name = sources[reading].name if reading < len(sources) else "?"
                raise SourceError(
                    f"source {name}: the process reading it ended "
                    f"(exit code {process.exitcode}) before the read did"
                ) from None
        path = folder / f"{number}.pickle"
        with open(path, "rb") as handle:
            message = pickle.load(handle)
        path.unlink()
        if isinstance(message, Failed):
            raise message.error from RemoteTraceback(message.trace)
        return message


def _serve(
    sources: list[Any],
    state_dir: Path | None,
    size: int,
    piece_size: int,
    keys: ChunkKeys | None,
    folder: Path,
    channel: Any,
) -> None:
    """The child process: read every source; send pieces, chunk ends, read ends, then None
    (or the error that ended the read). Should the flow's process die (killed) while the
    child waits to send, or before it has read the last messages, the child removes the
    folder and ends."""
    from matscreen.flows.heap import collect_rarely

    # Ctrl-C goes to the whole process group: the flow's process handles it and stops this
    # one (which would otherwise print a traceback of its own).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    collect_rarely()
    parent = multiprocessing.parent_process()
    assert parent is not None  # a spawned child
    sent = itertools.count()

    def send(message: Any) -> None:
        number = next(sent)
        partial = folder / f"{number}.partial"
        with open(partial, "wb") as handle:
            pickle.dump(message, handle, protocol=pickle.HIGHEST_PROTOCOL)
        partial.rename(folder / f"{number}.pickle")
        while True:
            try:
                channel.put(number, timeout=POLL_SECONDS)
                return
            except queue.Full:
                if not parent.is_alive():  # killed: nobody will read; leave nothing behind
                    shutil.rmtree(folder, ignore_errors=True)
                    os._exit(0)

    number = 0
    previous = keys.first if keys is not None else None
    finished = keys.finished if keys is not None else frozenset()
    try:
        for number, spec in enumerate(sources):
            read = open_source(spec, state_dir)
            planned = keys is not None and keys.plans and read.plannable
            chunk = _ChunkSender(send, piece_size, spec.name, previous, digests=not planned)
            if planned:
                for plans in _batches(read.plans(), size):
                    documents = [plan.document for plan in plans]
                    key = plan_key(chunk.previous or "", spec.name, read.builder.query, documents)
                    if key in finished:
                        read.skip(plans)
                        send(Chunk(number, [], [], key, planned=len(plans)))
                        chunk.previous = key
                        continue
                    for plan in plans:
                        chunk.add(read.checked(plan.build()))
                    chunk.end(key)
            else:
                for item in read:
                    chunk.add(item)
                    if chunk.count == size:
                        chunk.end()
                if chunk.count:
                    chunk.end()
            previous = chunk.previous
            send(ReadEnd(number, read.snapshot))
    except Exception as exc:  # sent to the flow, which raises it
        send(Failed(_sendable(exc, sources[number].name), traceback.format_exc()))
    else:
        send(None)
    # Until the flow has read every file: should it be killed first, nobody else would
    # remove them.
    while any(folder.glob("*.pickle")):
        if not parent.is_alive():
            shutil.rmtree(folder, ignore_errors=True)
            return
        time.sleep(POLL_SECONDS)


class _ChunkSender:
    """Sends the items of a source's chunks, records prepared, ``piece_size`` at a time
    (only one piece is held), and each chunk's end with its key: the key given, or, with
    ``digests`` when keys are made (``previous``, the key before, is not None), the chunk's
    :class:`~matscreen.tasks.chunk_keys.ChunkDigest`."""

    def __init__(
        self,
        send: Callable[[Any], None],
        piece_size: int,
        source: str,
        previous: str | None,
        digests: bool = True,
    ) -> None:
        self.send = send
        self.piece_size = piece_size
        self.source = source
        self.previous = previous
        self.digests = digests
        self.count = 0
        self._piece: list[Item] = []
        self._digest = self._new_digest()

    def _new_digest(self) -> ChunkDigest | None:
        if not self.digests or self.previous is None:
            return None
        return ChunkDigest(self.previous, self.source)

    def add(self, item: Item) -> None:
        """Add the chunk's next item (sent once a piece is full)."""
        item = prepared(item) if isinstance(item, StructureRecord) else item
        if self._digest is not None:
            self._digest.add(item)
        self._piece.append(item)
        self.count += 1
        if len(self._piece) == self.piece_size:
            self.send(self._piece)
            self._piece = []

    def end(self, key: str | None = None) -> None:
        """Send what is left of the chunk and its end, named ``key`` (by default its
        digest's key, or None without keys); the next chunk starts."""
        if key is None and self._digest is not None:
            key = self._digest.key()
        if self._piece:
            self.send(self._piece)
            self._piece = []
        self.send(_ChunkEnd(key))
        self.previous = key if key is not None else self.previous
        self.count = 0
        self._digest = self._new_digest()


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _sendable(error: Exception, source: str) -> Exception:
    """The error itself when it survives pickling, else a SourceError that describes it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return SourceError(f"source {source}: {type(error).__name__}: {error}")
    return error
