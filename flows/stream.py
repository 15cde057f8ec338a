"""Reading a campaign's streamed sources ahead of the flow, in a process of their own.

Making a candidate record is pure Python: decorating a prototype (or parsing a file row,
or a provider's document), its reduced formula, the hash of its structure and the
canonical JSON the catalog stores of it. For a decorated candidate that is about half of
what the flow's process spends on it, and the flow's process is what a large screen waits
for. So the sources are read by a child process, which sends each chunk of records with
their hashes and catalog text already made, while the flow records, deduplicates and
predicts the chunk before it. At most ``depth`` chunks wait between the two, so memory
stays bounded however long the read.

The child reads the sources one after the other, in the campaign's order, exactly as the
flow's process would (same rows, same failures, same snapshot). An error of the read (a
:class:`~matscreen.tasks.errors.SourceError`: a missing file, a server refusing the key)
reaches the flow as that error; a child that dies (killed, out of memory) is reported as
such, naming the source it was reading.
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import queue
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import iter_chunks, open_source
from matscreen.tasks.sources.records import RecordFailure, SourceSnapshot, StructureRecord

#: Seconds between two checks that the reading process is still alive.
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Chunk:
    """The next ``records`` and ``failures`` of the source at ``source`` (its position in
    the list read)."""

    source: int
    records: list[StructureRecord]
    failures: list[RecordFailure]


@dataclass(frozen=True)
class ReadEnd:
    """The read of the source at ``source`` has ended; its ``snapshot``."""

    source: int
    snapshot: SourceSnapshot


def prepared(records: list[StructureRecord]) -> list[StructureRecord]:
    """The records with their structure hash and catalog text made (kept with them)."""
    for record in records:
        _ = record.structure_sha256, record.fields_json
    return records


def read_ahead(
    sources: Sequence[Any], state_dir: Path | None, size: int, depth: int = 2
) -> Iterator[Chunk | ReadEnd]:
    """Read ``sources`` in a child process: every chunk of ``size`` records in turn, and
    after each source's last chunk its :class:`ReadEnd`.

    The child pickles each message to a file of a scratch folder and sends only its
    number, so a child killed in the middle of a message leaves no half of it to read.
    Leaving the loop early (or an error in it) stops the child and removes the folder.

    Raises
    ------
    SourceError
        If a source cannot be read, or the reading process dies.
    """
    context = multiprocessing.get_context("spawn")
    channel = context.Queue(maxsize=depth)
    folder = Path(tempfile.mkdtemp(prefix="matscreen-read-"))
    process = context.Process(
        target=_serve,
        args=(list(sources), state_dir, size, folder, channel),
        name="matscreen-source-reader",
        daemon=True,
    )
    process.start()
    reading = 0
    try:
        while True:
            try:
                number = channel.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not process.is_alive():
                    name = sources[reading].name if reading < len(sources) else "?"
                    raise SourceError(
                        f"source {name}: the process reading it ended "
                        f"(exit code {process.exitcode}) before the read did"
                    ) from None
                continue
            message = _take(folder / f"{number}.pickle")
            if message is None:
                return
            if isinstance(message, BaseException):
                raise message
            if isinstance(message, ReadEnd):
                reading = message.source + 1
            yield message
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
        channel.close()
        shutil.rmtree(folder, ignore_errors=True)


def _take(path: Path) -> Any:
    """The message pickled at ``path`` (removed once read)."""
    with open(path, "rb") as handle:
        message = pickle.load(handle)
    path.unlink()
    return message


def _serve(
    sources: list[Any], state_dir: Path | None, size: int, folder: Path, channel: Any
) -> None:
    """The child process: read every source; send chunks, read ends, then None (or the
    error that ended the read)."""
    from matscreen.flows.heap import collect_rarely

    collect_rarely()
    sent = itertools.count()

    def send(message: Any) -> None:
        number = next(sent)
        partial = folder / f"{number}.partial"
        with open(partial, "wb") as handle:
            pickle.dump(message, handle, protocol=pickle.HIGHEST_PROTOCOL)
        partial.rename(folder / f"{number}.pickle")
        channel.put(number)

    number = 0
    try:
        for number, spec in enumerate(sources):
            read = open_source(spec, state_dir)
            for records, failures in iter_chunks(read, size):
                send(Chunk(number, prepared(records), failures))
            send(ReadEnd(number, read.snapshot))
    except Exception as exc:  # sent to the flow, which raises it
        send(_sendable(exc, sources[number].name))
        return
    send(None)


def _sendable(error: Exception, source: str) -> Exception:
    """The error itself when it survives pickling, else a SourceError that describes it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return SourceError(f"source {source}: {type(error).__name__}: {error}")
    return error
