"""The catalog: content addressing, immutability, PROV rules in code and in the database."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError, IntegrityError

from matscreen.catalog import Activity, ArtifactStore, Catalog, Edge, Entity
from matscreen.catalog.rules import RELATIONS
from matscreen.tasks.errors import ArtifactError, CatalogError, NotFoundError, ProvenanceRuleError
from matscreen.tasks.runinfo import utc_now


def _activity(name: str, activity_id: str | None = None) -> Activity:
    return Activity(
        id=activity_id or f"act-{name}",
        kind="task_run",
        name=name,
        started_at=utc_now(),
        ended_at=utc_now(),
        status="completed",
    )


def test_same_content_same_id_and_reuse_is_recorded_as_used(catalog: Catalog) -> None:
    snapshot = Entity.new("source_snapshot", "cmr", {"sha256": "ab" * 32, "licence": "MIT"})
    again = Entity.new("source_snapshot", "cmr", {"licence": "MIT", "sha256": "ab" * 32})
    other = Entity.new("source_snapshot", "cmr", {"sha256": "cd" * 32, "licence": "MIT"})
    assert snapshot.id == again.id != other.id

    assert catalog.record_step(_activity("first"), [snapshot]) == {snapshot.id}
    assert catalog.record_step(_activity("second"), [again]) == set()
    assert catalog.edges(relation="wasGeneratedBy", subject_id=snapshot.id) == [
        Edge("wasGeneratedBy", snapshot.id, "act-first")
    ]
    assert catalog.edges(relation="used", object_id=snapshot.id) == [
        Edge("used", "act-second", snapshot.id)
    ]
    assert catalog.get_entity(snapshot.id[:10]).attributes == {
        "licence": "MIT",
        "sha256": "ab" * 32,
    }


def test_entities_and_edges_cannot_be_changed(catalog: Catalog) -> None:
    entity = Entity.new("structure_record", "cmr:1", {"formula": "SrTiO3"})
    catalog.record_step(_activity("ingest"), [entity])
    with catalog.engine.begin() as conn, pytest.raises(DatabaseError, match="immutable"):
        conn.execute(text("UPDATE entities SET name = 'cmr:2'"))
    with catalog.engine.begin() as conn, pytest.raises(DatabaseError, match="immutable"):
        conn.execute(text("DELETE FROM edges"))
    assert catalog.get_entity(entity.id).name == "cmr:1"


def test_rules_table_refuses_edges_of_the_wrong_shape(catalog: Catalog) -> None:
    entity = Entity.new("model", "m", {"target": "band_gap"})
    catalog.record_step(_activity("fit"), [entity])
    with pytest.raises(ProvenanceRuleError, match="wasDerivedFrom needs entity -> entity"):
        catalog.record_step(
            _activity("bad"), derived=[Edge("wasDerivedFrom", entity.id, "act-fit")]
        )
    with pytest.raises(ProvenanceRuleError, match="is not stored"):
        catalog.record_step(
            _activity("bad2"), derived=[Edge("wasDerivedFrom", entity.id, "f" * 64)]
        )
    # Ends the step does not know are checked by the database, then named.
    with pytest.raises(ProvenanceRuleError, match=f"used: node {'e' * 64} is not stored"):
        catalog.record_step(_activity("bad4"), used=["e" * 64])
    with pytest.raises(ProvenanceRuleError, match="used needs activity -> entity"):
        catalog.record_step(_activity("bad5"), used=["act-fit"])
    with pytest.raises(ProvenanceRuleError, match="wasAssociatedWith: node no-agent is not"):
        catalog.start_activity(_activity("bad6"), agents=["no-agent"])
    with pytest.raises(ProvenanceRuleError, match="unknown relation 'wasInformedBy'"):
        catalog.record_step(_activity("bad3"), derived=[Edge("wasInformedBy", "a", "b")])
    with pytest.raises(ProvenanceRuleError, match="unknown entity kind 'molecule'"):
        Entity.new("molecule", "x", {})
    # A refused step leaves nothing behind: not even its activity.
    for refused in ("bad", "bad4", "bad5", "bad6"):
        with pytest.raises(NotFoundError):
            catalog.get_activity(f"act-{refused}")


def test_database_itself_enforces_the_relation_shapes(catalog: Catalog) -> None:
    entity = Entity.new("model", "m", {"target": "band_gap"})
    catalog.record_step(_activity("fit"), [entity])
    insert = text(
        "INSERT INTO edges (relation, subject_id, subject_type, object_id, object_type, "
        "recorded_at) VALUES (:r, :s, :st, :o, :ot, 'now')"
    )
    # 'used' must go activity -> entity: the CHECK constraint refuses entity -> activity.
    with catalog.engine.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(
            insert, {"r": "used", "s": entity.id, "st": "entity", "o": "act-fit", "ot": "activity"}
        )
    # Types that lie about the node: the composite foreign key refuses them.
    with catalog.engine.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(
            insert, {"r": "used", "s": entity.id, "st": "activity", "o": "act-fit", "ot": "entity"}
        )
    assert set(RELATIONS) == {
        "used",
        "wasGeneratedBy",
        "wasDerivedFrom",
        "wasAssociatedWith",
        "alternateOf",
        "wasAttributedTo",
    }


def test_activity_lifecycle_and_agents(catalog: Catalog) -> None:
    agent = catalog.ensure_agent("software", "matscreen 0.1.0", {"matscreen": "0.1.0"})
    assert agent == catalog.ensure_agent("software", "matscreen 0.1.0", {"matscreen": "0.1.0"})
    run = Activity(id="run-1", kind="flow_run", name="screen-candidates", started_at=utc_now())
    catalog.start_activity(run, agents=[agent])
    assert catalog.get_activity("run-1").status == "running"
    catalog.finish_activity("run-1", "completed")
    finished = catalog.get_activity("run-1")
    assert finished.status == "completed" and finished.ended_at is not None
    assert catalog.edges(relation="wasAssociatedWith") == [
        Edge("wasAssociatedWith", "run-1", agent)
    ]
    with pytest.raises(NotFoundError):
        catalog.finish_activity("run-2", "completed")


def test_artifacts_are_verified_on_read(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    sha = store.put_bytes(b"feature table bytes")
    assert store.put_bytes(b"feature table bytes") == sha
    assert store.get_bytes(sha) == b"feature table bytes"
    store.path_for(sha).write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match=f"is corrupt: its sha256 is .*, expected {sha}"):
        store.get_bytes(sha)
    with pytest.raises(ArtifactError, match="missing"):
        store.get_bytes("0" * 64)


def test_entity_ids_are_the_hash_of_the_canonical_whole() -> None:
    import json as _json

    from matscreen.tasks.hashing import canonical_json, content_hash

    attributes = {"b": [1, 2.5, float("nan"), (True, None)], "a": {"é": "x", "n": float("inf")}}
    entity = Entity.new("structure_record", 'cmr:1 "quoted"', attributes)
    plain = _json.loads(canonical_json(attributes))
    assert entity.id == content_hash(
        {"kind": "structure_record", "name": 'cmr:1 "quoted"', "attributes": plain}
    )
    assert entity.attributes == plain and entity.attributes_json == canonical_json(plain)


@pytest.mark.parametrize(
    "attributes",
    [
        {"b": [1, 2.5, (True, None)], "a": {"é": "x", "s": "t"}, "c": []},  # plain: fast
        {"n": np.float64(1.5), "k": [np.int64(3)]},  # numpy scalars
        {"s": {"b", "a"}, "p": Path("/x")},  # a set, a path
        {"nan": float("nan")},
        {True: 1, None: 2, 3: 4},  # keys json.dumps writes otherwise than str()
        {"sites": [{"p": {10: "a", 2: "b"}}]},  # integer keys deep in a list: sorted as text
        {"d": OrderedDict([("z", {1: 2}), ("a", 1)])},  # a dict subclass is checked too
        {"t": ({"x": [(1, {2: 3})]},)},  # tuples within tuples
    ],
)
def test_entity_text_and_id_equal_the_canonical_form(attributes: dict) -> None:
    import json as _json

    from matscreen.tasks.hashing import canonical_json, content_hash

    entity = Entity.new("structure_record", "r", attributes)
    plain = _json.loads(canonical_json(attributes))
    assert entity.attributes_json == canonical_json(attributes)
    assert entity.id == content_hash({"kind": "structure_record", "name": "r", "attributes": plain})
    assert _json.loads(entity.attributes_json) == plain


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://me:s3cret-pw@db:5432/cat",
            "postgresql+psycopg://me:***@db:5432/cat",
        ),
        (
            "postgresql+psycopg://db/cat?password=s3cret-pw&sslmode=require",
            "postgresql+psycopg://db/cat?password=***&sslmode=require",
        ),
        (
            "https://x.org/v1/structures?api_key=abc123&page=2",
            "https://x.org/v1/structures?api_key=***&page=2",
        ),
        ("sqlite:////home/me/catalog.sqlite", "sqlite:////home/me/catalog.sqlite"),
    ],
)
def test_urls_are_shown_without_their_secrets(
    url: str, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matscreen.flows.settings import Settings
    from matscreen.tasks.secrets import mask_url

    assert mask_url(url) == shown
    monkeypatch.setenv("MATSCREEN_CATALOG_URL", url)
    assert Settings().catalog_url_for_display == shown


def test_a_catalog_that_cannot_be_opened_names_its_url_without_the_password() -> None:
    url = "postgresql+psycopg://me@127.0.0.1:1/cat?password=s3cret-pw&connect_timeout=2"
    with pytest.raises(CatalogError) as error:
        Catalog(url)
    assert "s3cret-pw" not in str(error.value) and "password=***" in str(error.value)
