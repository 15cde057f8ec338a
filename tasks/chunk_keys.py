"""How the chunks of a streamed screen are named, so that a re-run finds those an earlier,
killed run finished.

A chunk's result depends on its records, on every record read before it (the deduplicator
compares it with all of them) and on what the screen's fingerprint names (spec, models,
software, code). So each chunk's key chains from the key of the chunk before, the first
from the fingerprint (:class:`ChunkKeys`). The reading process makes the keys as it reads:

- :func:`chunk_key`: from the chunk's records and failed rows, as they stream past
  (:class:`ChunkDigest`);
- :func:`plan_key`: for a source that plans its items
  (:attr:`~matscreen.tasks.sources.base.SourceRead.plannable`, prototype decorations),
  from the items' documents (site assignments), which fix the records given the spec, the
  source's files and the code, so that a finished chunk is named without building it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from matscreen.tasks.hashing import canonical_json
from matscreen.tasks.sources.records import RecordFailure, StructureRecord


@dataclass(frozen=True)
class ChunkKeys:
    """How the chunks of a screen are named: ``first`` is the key the chain starts from
    (the screen's fingerprint), ``finished`` the keys of the chunks an earlier run finished
    and a re-run takes; with ``plans``, a source that plans its items is keyed by its plans
    and builds no record of a finished chunk (off when the code cannot be identified)."""

    first: str
    finished: frozenset[str] = frozenset()
    plans: bool = True


class ChunkDigest:
    """:func:`chunk_key` made as a chunk's items stream past: records are hashed as they
    come, failed rows (few) kept until :meth:`key`, which hashes them after the records."""

    def __init__(self, previous: str, source: str) -> None:
        self._digest = hashlib.sha256(f"{previous}\n{source}\n".encode())
        self._failures: list[RecordFailure] = []

    def add(self, item: StructureRecord | RecordFailure) -> None:
        """Fold in the chunk's next item."""
        if isinstance(item, StructureRecord):
            text = item.fields_json or canonical_json(item.field_values())
            self._digest.update(f"{item.id}\n{item.structure_sha256}\n{text}\n".encode())
        else:
            self._failures.append(item)

    def key(self) -> str:
        """The chunk's key, of the items added so far."""
        digest = self._digest.copy()
        for failure in self._failures:
            digest.update(canonical_json(asdict(failure)).encode() + b"\n")
        return digest.hexdigest()


def chunk_key(
    previous: str, source: str, records: Sequence[StructureRecord], failures: Sequence[Any]
) -> str:
    """The key of a chunk read after the chunk keyed ``previous`` (the first chunk: after the
    screen's fingerprint): the sha256 of that key, the source's name, and every record's
    id, structure hash and catalog text and every failed row, in order.

    A chunk's key thus names its content and everything read before it, which is what its
    screening depends on (the deduplicator compares it with every earlier record).
    """
    digest = ChunkDigest(previous, source)
    for item in [*records, *failures]:
        digest.add(item)
    return digest.key()


def plan_key(previous: str, source: str, context: Any, documents: Sequence[Any]) -> str:
    """The key of a chunk of a source that plans its items, read after the chunk keyed
    ``previous``: the sha256 of that key, the source's name, ``context`` and each item's
    document (a prototype's site assignment), in order.

    A planned item's record is made from its document, the source's spec, its files and the
    code that builds it: ``context`` is the read's query, which names the spec's choices and
    holds the sha256 of a prototype file; the first key of the chain names the spec, the
    software versions and the code.
    """
    digest = hashlib.sha256(f"{previous}\nplanned {source}\n{canonical_json(context)}\n".encode())
    for document in documents:
        digest.update(canonical_json(document).encode() + b"\n")
    return digest.hexdigest()
