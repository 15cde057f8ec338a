"""What a kept chunk depends on: a change to any of it means the chunk is screened again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from matscreen.catalog.checkpoints import FinishedChunk
from matscreen.flows.resume import ScreenResume
from matscreen.tasks.chunk_keys import ChunkKeys


class _Catalog:
    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    def get_entities(self, ids: list[str]) -> list:
        return [SimpleNamespace(id=i, attributes={}) for i in ids if i in self.ids]

    def existing_ids(self, ids: list[str]) -> set[str]:
        return set(ids) & self.ids


def _resume(tmp_path: Path, **changes) -> ScreenResume:
    entries = tmp_path / "entries.json"
    if not entries.exists():
        entries.write_text("[]")
    parts = {
        "spec": "spec-sha",
        "mp": None,
        "software": {"matscreen": "1.0", "pymatgen": "2025.1"},
        "catalog": "sqlite:///catalog.sqlite",
        "models": {"band_gap": "model-1"},
        "known": {"cmr:1": "entity-1"},
        "phases": [("SrTiO3", -3.5, "cmr:1")],
        "catalog_ids": {"p1", "e1", "e2"},
        "damaged": set(),
    } | changes
    stability = SimpleNamespace(elements=None, entries=[entries], mp=parts["mp"])
    spec = SimpleNamespace(name="screen", stability=stability, fingerprint=lambda: parts["spec"])
    settings = SimpleNamespace(
        catalog_url_for_display=parts["catalog"], screen_state_dir=tmp_path / "screens"
    )
    recorder = SimpleNamespace(
        software=parts["software"],
        catalog=_Catalog(parts["catalog_ids"]),
        artifacts=SimpleNamespace(
            problems_of=lambda entities: {
                e.id: "corrupt" for e in entities if e.id in parts["damaged"]
            }
        ),
    )
    hull = SimpleNamespace(training=parts["phases"])
    resume = ScreenResume(spec, settings, recorder, parts["models"], parts["known"], hull)
    resume.open()
    return resume


def _first_key(resume: ScreenResume) -> str | None:
    keys = resume.start()
    return None if keys is None else keys.first


def test_the_key_changes_with_everything_a_chunk_depends_on(tmp_path: Path) -> None:
    key = _first_key(_resume(tmp_path))
    assert key == _first_key(_resume(tmp_path))
    changes = [
        {"spec": "other-spec"},
        {"software": {"matscreen": "1.0", "pymatgen": "2025.2"}},
        {"catalog": "postgresql://host/db"},
        {"models": {"band_gap": "model-2"}},
        {"known": {"cmr:1": "entity-1", "cmr:2": "entity-2"}},  # an excluded record too
        {"phases": [("SrTiO3", -3.6, "cmr:1")]},
    ]
    keys = {_first_key(_resume(tmp_path, **change)) for change in changes}
    assert key not in keys and len(keys) == len(changes)
    # An edited reference file of the hull.
    (tmp_path / "entries.json").write_text('[{"edited": true}]')
    assert _first_key(_resume(tmp_path)) != key


def test_phases_from_the_materials_project_keep_no_chunk(tmp_path: Path) -> None:
    # An earlier run of the campaign, without them, was killed and kept a chunk.
    earlier = _resume(tmp_path)
    earlier.keep(FinishedChunk(key=_first_key(earlier), counts={"records": 1}))
    earlier.close()
    resume = _resume(tmp_path, mp=SimpleNamespace(chemsys=True))
    assert _first_key(resume) is None and resume.take(None) is None
    resume.keep(FinishedChunk(key="k", counts={"records": 1}))
    assert [p.name for p in (tmp_path / "screens" / "screen").glob("*/*.json")] != ["k.json"]
    # Its run finishing removes the earlier run's chunks too.
    resume.forget()
    assert not (tmp_path / "screens" / "screen").exists()


def test_a_chunk_naming_catalog_entries_that_are_gone_is_screened_again(tmp_path: Path) -> None:
    resume = _resume(tmp_path)
    key = _first_key(resume)
    assert key is not None
    chunk = FinishedChunk(key=key, prediction_ids=["p1"], entity_ids=["e1", "e2"])
    resume.keep(chunk)
    # A second run of the same screen while this one holds it takes nothing.
    second = _resume(tmp_path)
    assert second.start() == ChunkKeys(key, frozenset()) and second.take(key) is None
    second.close()
    resume.close()  # the run ended (killed): its chunks stay
    # The catalog was made anew at the same address after the run was killed.
    emptied = _resume(tmp_path, catalog_ids={"e1", "e2"})
    assert emptied.start() == ChunkKeys(key, frozenset()) and emptied.take(key) is None
    emptied.close()
    # A prediction set whose stored table is damaged.
    damaged = _resume(tmp_path, damaged={"p1"})
    assert damaged.start() == ChunkKeys(key, frozenset()) and damaged.take(key) is None
    damaged.close()
    again = _resume(tmp_path)
    assert again.start() == ChunkKeys(key, frozenset({key}))
    taken = again.take(key)
    assert taken is not None and taken.entity_ids == ["e1", "e2"]
    assert again.take(key) is None  # taken once
    # The run finishes: its campaign's chunks, lock files and folder are removed.
    again.forget()
    assert not (tmp_path / "screens" / "screen").exists()
