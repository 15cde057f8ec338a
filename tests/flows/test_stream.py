"""Reading the streamed sources in a child process: the same chunks as a read in the
flow's process, errors that name the source, a killed reader reported, nothing left over."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from pymatgen.core import Structure

from matscreen.flows.stream import Chunk, ReadEnd, read_ahead
from matscreen.tasks.chunk_keys import ChunkKeys, chunk_key
from matscreen.tasks.errors import SourceError
from matscreen.tasks.hashing import structure_hash
from matscreen.tasks.sources.base import iter_chunks, open_source
from matscreen.tasks.spec import FilesSourceSpec, PrototypeSourceSpec

SITES = {"A": ["Ca", "Sr", "Ba", "La", "Na", "K"], "B": ["Ti", "Zr", "Al", "Nb"], "X": ["O"]}


def _sources(tmp_path: Path) -> list[PrototypeSourceSpec | FilesSourceSpec]:
    return [
        PrototypeSourceSpec(
            kind="prototypes", name="abx3", prototype="perovskite_ABX3", sites=SITES
        ),
        PrototypeSourceSpec(
            kind="prototypes",
            name="small",
            prototype="perovskite_ABX3",
            sites={"A": ["Sr"], "B": ["Ti", "Zr"], "X": ["O"]},
            charge_neutral=False,
        ),
        # Helium has no radius: failed rows between records.
        PrototypeSourceSpec(
            kind="prototypes",
            name="rocksalt",
            prototype="rocksalt_AX",
            sites={"A": ["Na", "K", "Li"], "X": ["He", "Cl", "Ne", "Br"]},
            charge_neutral=False,
        ),
    ]


def _readers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "matscreen-source-reader"]


def _in_process(sources, size):
    out = []
    for number, spec in enumerate(sources):
        read = open_source(spec)
        for records, failures in iter_chunks(read, size):
            out.append(Chunk(number, records, failures))
        out.append(ReadEnd(number, read.snapshot))
    return out


def _strip(item):
    if isinstance(item, ReadEnd):
        return ("end", item.source, {**item.snapshot.__dict__, "retrieved_at": None})
    return ("chunk", item.source, item.records, item.failures)


@pytest.mark.parametrize("piece", [1000, 3, 7])
def test_chunks_and_snapshots_equal_a_read_in_this_process(tmp_path: Path, piece: int) -> None:
    sources = _sources(tmp_path)
    ahead = list(read_ahead(sources, None, 7, piece=piece))
    here = _in_process(sources, 7)
    assert [_strip(i) for i in ahead] == [_strip(i) for i in here]
    assert [type(i).__name__ for i in ahead].count("ReadEnd") == 3
    assert sum(len(i.failures) for i in ahead if isinstance(i, Chunk)) == 6
    chunks = [i for i in ahead if isinstance(i, Chunk)]
    assert sum(len(c.records) for c in chunks) > 7  # several chunks of the first source
    record = chunks[0].records[0]
    # Hash and catalog text arrive made: nothing is computed again in the flow's process.
    assert {"structure_sha256", "fields_json"} <= record.__dict__.keys()
    assert record.structure_sha256 == structure_hash(record.structure)


def test_a_source_that_cannot_be_read_is_its_own_error_after_the_sources_before(
    tmp_path: Path,
) -> None:
    good = _sources(tmp_path)[1]
    folder = tmp_path / "nowhere"
    folder.mkdir()
    missing = FilesSourceSpec(
        kind="files", name="mine", path=folder, pattern="*.cif", licence="x", citation=["y"]
    )
    items = []
    with pytest.raises(SourceError) as raised:
        for item in read_ahead([good, missing], None, 50):
            items.append(item)
    with pytest.raises(SourceError) as here:
        list(open_source(missing))
    assert str(raised.value) == str(here.value)
    assert "nowhere" in str(raised.value)
    assert isinstance(items[-1], ReadEnd) and items[-1].source == 0
    assert _readers() == []


def test_a_killed_reader_is_reported_with_the_source_it_was_reading(tmp_path: Path) -> None:
    stream = read_ahead(_sources(tmp_path), None, 5, depth=1)
    first = next(stream)
    assert isinstance(first, Chunk)
    (reader,) = _readers()
    os.kill(reader.pid, signal.SIGKILL)
    with pytest.raises(
        SourceError, match=r"source abx3: the process reading it ended \(exit code -9\)"
    ):
        for _ in stream:
            pass
    assert _readers() == []


def test_leaving_the_loop_early_stops_the_reader(tmp_path: Path) -> None:
    stream = read_ahead(_sources(tmp_path), None, 5, depth=1)
    next(stream)
    assert len(_readers()) == 1
    stream.close()
    assert _readers() == []


def test_an_error_that_cannot_be_sent_arrives_as_a_source_error_that_describes_it() -> None:
    from matscreen.flows.stream import _sendable

    class Unsendable(Exception):
        def __init__(self) -> None:
            super().__init__("the socket closed")
            self.callback = lambda: None  # no pickle for this

    sent = _sendable(Unsendable(), "remote")
    assert isinstance(sent, SourceError)
    assert str(sent) == "source remote: Unsendable: the socket closed"
    kept = SourceError("source remote: HTTP 401")
    assert _sendable(kept, "remote") is kept


@pytest.mark.parametrize(
    ("sites", "piece"),
    [
        # The reader waits to send (the queue is full) when the flow is killed.
        (
            "{'A': ['Ca', 'Sr', 'Ba', 'La', 'Na', 'K'], 'B': ['Ti', 'Zr', 'Al', 'Nb'], 'X': ['O']}",
            1,
        ),
        # The reader has sent everything and waits for its files to be read.
        ("{'A': ['Sr'], 'B': ['Ti', 'Zr'], 'X': ['O']}", 1000),
    ],
)
def test_a_reader_whose_flow_was_killed_ends_and_leaves_no_files(
    tmp_path: Path, sites: str, piece: int
) -> None:
    import subprocess
    import sys
    import time

    import psutil

    # A flow's process that reads one chunk, says who its reader is, then waits.
    code = "\n".join(
        [
            "import multiprocessing, sys, time",
            "from matscreen.flows.stream import read_ahead",
            "from matscreen.tasks.spec import PrototypeSourceSpec",
            "spec = PrototypeSourceSpec(kind='prototypes', name='abx3',",
            f"    prototype='perovskite_ABX3', sites={sites})",
            "if __name__ == '__main__':",
            f"    stream = read_ahead([spec], None, 1, depth=1, piece={piece})",
            "    next(stream)",
            "    (reader,) = multiprocessing.active_children()",
            "    print(reader.pid, flush=True)",
            "    time.sleep(600)",
        ]
    )
    script = tmp_path / "flow.py"
    script.write_text(code)
    env = {**__import__("os").environ, "TMPDIR": str(tmp_path)}
    flow = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    try:
        reader = psutil.Process(int(flow.stdout.readline()))
        assert list(tmp_path.glob("matscreen-read-*"))
        flow.kill()
        flow.wait(timeout=30)
        gone, _ = psutil.wait_procs([reader], timeout=30)
    finally:
        flow.kill()
    assert gone, "the reader outlived the flow's process"
    deadline = time.monotonic() + 10
    while list(tmp_path.glob("matscreen-read-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(tmp_path.glob("matscreen-read-*"))


def test_ctrl_c_reaches_the_flow_not_the_reader(tmp_path: Path) -> None:
    sources = _sources(tmp_path)
    stream = read_ahead(sources, None, 5, depth=1)
    items = [next(stream)]
    (reader,) = _readers()
    os.kill(reader.pid, signal.SIGINT)  # what the terminal sends to the process group
    items += list(stream)
    assert [_strip(i) for i in items] == [_strip(i) for i in _in_process(sources, 5)]


def _written_cifs(folder: Path, count: int) -> Path:
    """``count`` CIF files of decorated perovskites in ``folder`` (a source read by its
    records, not planned)."""
    folder.mkdir()
    spec = _sources(folder)[0]
    for number, item in enumerate(list(open_source(spec))[:count]):
        Structure.from_dict(item.structure).to(filename=str(folder / f"{number}.cif"))
    return folder


def test_keyed_chunks_are_the_same_and_finished_planned_ones_are_not_built(tmp_path: Path) -> None:
    cifs = FilesSourceSpec(
        kind="files", name="mine", path=_written_cifs(tmp_path / "cifs", 9), pattern="*.cif",
        licence="x", citation=["y"],
    )  # fmt: skip
    sources = [_sources(tmp_path)[0], cifs, _sources(tmp_path)[2]]
    plain = list(read_ahead(sources, None, 7))
    keyed = list(read_ahead(sources, None, 7, ChunkKeys("first")))
    assert [_strip(i) for i in keyed] == [_strip(i) for i in plain]
    keys = [i.key for i in keyed if isinstance(i, Chunk)]
    assert all(keys) and len(set(keys)) == len(keys) > 6
    assert all(i.key is None for i in plain if isinstance(i, Chunk))
    # The keys are a chain from the first one: the same again, all different from another.
    again = [
        i.key for i in read_ahead(sources, None, 7, ChunkKeys("first")) if isinstance(i, Chunk)
    ]
    other = [
        i.key for i in read_ahead(sources, None, 7, ChunkKeys("other")) if isinstance(i, Chunk)
    ]
    assert again == keys and not set(other) & set(keys)

    # Finished chunks of a planned source arrive planned: no record built, the same count,
    # key and chain; the snapshots are those of a full read. A finished chunk of the files
    # source is read in full (its key is made of its records).
    chunks = [i for i in keyed if isinstance(i, Chunk)]
    files_chunk = next(n for n, c in enumerate(chunks) if c.source == 1)
    finished = frozenset({keys[0], keys[2], keys[files_chunk], keys[-1]})
    resumed = list(read_ahead(sources, None, 7, ChunkKeys("first", finished)))
    assert [i.key for i in resumed if isinstance(i, Chunk)] == keys
    for before, after in zip(keyed, resumed, strict=True):
        if isinstance(after, Chunk) and after.key in finished and after.source != 1:
            assert after.records == [] and after.failures == []
            assert after.planned == len(before.records) + len(before.failures) > 0
        else:
            assert _strip(after) == _strip(before)
            assert not isinstance(after, Chunk) or after.planned == 0


def test_without_plans_every_chunk_is_read_and_keyed_by_its_records(tmp_path: Path) -> None:
    sources = _sources(tmp_path)[:1]
    planned = [i for i in read_ahead(sources, None, 7, ChunkKeys("first")) if isinstance(i, Chunk)]
    finished = frozenset(c.key for c in planned if c.key)
    # The reader cannot identify the code: chunks are keyed by their records, built all.
    unplanned = ChunkKeys("first", finished, plans=False)
    chunks = [i for i in read_ahead(sources, None, 7, unplanned) if isinstance(i, Chunk)]
    assert all(c.planned == 0 and c.records for c in chunks)
    assert [_strip(c) for c in chunks] == [_strip(c) for c in planned]
    expected, previous = [], "first"
    for c in planned:
        previous = chunk_key(previous, "abx3", c.records, c.failures)
        expected.append(previous)
    assert [c.key for c in chunks] == expected and not set(expected) & finished


def test_a_planned_source_with_no_candidate_sends_only_its_end(tmp_path: Path) -> None:
    # No charge-neutral decoration: nothing to plan, build or key, and the same snapshot.
    empty = PrototypeSourceSpec(
        kind="prototypes",
        name="none",
        prototype="perovskite_ABX3",
        sites={"A": ["Na"], "B": ["K"], "X": ["O"]},
    )
    keyed = list(read_ahead([empty], None, 7, ChunkKeys("first", frozenset({"x" * 64}))))
    assert [type(i).__name__ for i in keyed] == ["ReadEnd"]
    assert _strip(keyed[0]) == _strip(_in_process([empty], 7)[0])
    assert keyed[0].snapshot.n_rows == 0
