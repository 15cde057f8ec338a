"""The Materials Project source against a loopback server serving 200 real summary documents.

Expected selections are computed here from the documents' own structures and values, not by
the server's code. No test reaches beyond 127.0.0.1: a guard fails any other connection.
"""

from __future__ import annotations

import json
import secrets
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from pymatgen.core import Composition
from servers.mp import Fault, load_summary_documents, mp_server
from support.network import loopback_only  # noqa: F401  (autouse guard)

import matscreen.tasks.sources.mp as mp_source
from matscreen.tasks.errors import SourceError
from matscreen.tasks.hashing import structure_hash
from matscreen.tasks.sources.base import open_source, read_source
from matscreen.tasks.sources.records import IngestResult, RecordFailure
from matscreen.tasks.spec import MPSourceSpec

#: The environment variable the specs name, and made-up keys of the 32 characters mp-api wants.
KEY_ENV = "MATSCREEN_TEST_MP_KEY"
API_KEY = secrets.token_hex(16)
WRONG_KEY = secrets.token_hex(16)


@pytest.fixture(scope="module")
def documents(data_dir: Path) -> list[dict[str, Any]]:
    """The 200 real summary documents, as the API would serve them."""
    return load_summary_documents(data_dir / "materials_project" / "summary_200.jsonl")


@pytest.fixture()
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Waits between retries, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(mp_source, "sleep", recorded.append)
    return recorded


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    return API_KEY


def spec_for(url: str, **fields: Any) -> MPSourceSpec:
    return MPSourceSpec(kind="mp", name="mp", endpoint=url, api_key_env=KEY_ENV, **fields)


def expected_id(document: dict[str, Any]) -> str:
    return "struct-" + structure_hash(document["structure"])[:16]


def elements_of(document: dict[str, Any]) -> set[str]:
    return {sp["element"] for site in document["structure"]["sites"] for sp in site["species"]}


def reduced_formula(document: dict[str, Any]) -> str:
    counts: dict[str, float] = {}
    for site in document["structure"]["sites"]:
        for sp in site["species"]:
            counts[sp["element"]] = counts.get(sp["element"], 0.0) + sp["occu"]
    return Composition(counts).reduced_formula


def ids(result: IngestResult) -> list[str]:
    return [record.source_id for record in result.records]


# --- queries ---------------------------------------------------------------------------------

QUERIES = {
    "elements": (
        {"elements": ["O", "Ac"]},
        lambda d: {"Ac", "O"} <= elements_of(d),
        {"elements": "O,Ac"},
    ),
    "exclude_elements": (
        {"exclude_elements": ["Mg", "O"]},
        lambda d: not elements_of(d) & {"Mg", "O"},
        {"exclude_elements": "Mg,O"},
    ),
    "chemsys": (
        {"chemsys": ["O-Ac", "Ac-Mg"]},
        lambda d: elements_of(d) in ({"Ac", "O"}, {"Ac", "Mg"}),
        {"chemsys": "O-Ac,Ac-Mg"},
    ),
    "formula": (
        {"formula": ["Ac2O3", "AcF3", "Ac2Mg"]},
        lambda d: reduced_formula(d) in ("Ac2O3", "AcF3", "Ac2Mg"),
        {"formula": "Ac2O3,AcF3,Ac2Mg"},
    ),
    "band_gap": (
        {"ranges": {"band_gap": {"min": 1.0, "max": 3.0}}},
        lambda d: 1.0 <= d["band_gap"] <= 3.0,
        {"band_gap_min": "1.0", "band_gap_max": "3.0"},
    ),
    "insulators_up_to_4_sites": (
        {"is_metal": False, "ranges": {"num_sites": {"max": 4}}},
        lambda d: not d["is_metal"] and len(d["structure"]["sites"]) <= 4,
        {"is_metal": "False", "nsites_max": "4"},
    ),
    "stable_formation_energy": (
        {"is_stable": True, "ranges": {"formation_energy_per_atom": {"max": -1.0}}},
        lambda d: d["is_stable"] and d["formation_energy_per_atom"] <= -1.0,
        {"is_stable": "True", "formation_energy_per_atom_max": "-1.0"},
    ),
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_query_returns_exactly_the_matching_documents(
    name: str, documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    fields, matches, sent = QUERIES[name]
    expected = [d for d in documents if matches(d)]
    assert 0 < len(expected) < len(documents)
    with mp_server(documents, API_KEY) as (url, server):
        result = read_source(spec_for(url, **fields), state_dir=tmp_path)
        (request,) = server.summary_requests()
    assert ids(result) == [expected_id(d) for d in expected]
    assert [r.formula for r in result.records] == [reduced_formula(d) for d in expected]
    assert [r.properties["band_gap"] for r in result.records] == [d["band_gap"] for d in expected]
    assert result.failures == []
    for parameter, value in sent.items():
        assert request.params[parameter] == value
    assert request.params["_skip"] == "0"
    assert request.params["_sort_fields"] == "material_id"


def test_band_gap_window_selects_the_four_real_semiconductors(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, _):
        result = read_source(
            spec_for(url, ranges={"band_gap": {"min": 1.0, "max": 3.0}}), state_dir=tmp_path
        )
    got = {(r.extra["formula_pretty"], r.properties["band_gap"]) for r in result.records}
    assert got == {
        ("Ac2S3", 2.2729),
        ("AcCrO3", 2.0031000000000008),
        ("AcGaO3", 2.895900000000001),
        ("AcI3", 2.5886),
    }


def test_records_carry_requested_properties_and_metadata(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        result = read_source(spec_for(url, chunk_size=100), state_dir=tmp_path)
        request = server.summary_requests()[0]
    assert request.params["_fields"].split(",") == [
        "material_id",
        "structure",
        "formula_pretty",
        "symmetry",
        "last_updated",
        "deprecated",
        "band_gap",
        "formation_energy_per_atom",
        "energy_above_hull",
        "is_metal",
        "is_stable",
    ]
    record = result.records[4]  # the fifth document, Ac2AgPb
    source = documents[4]
    assert record.formula == "Ac2AgPb"
    assert record.source_id == expected_id(source)
    assert record.properties == {
        "band_gap": 0.0,
        "formation_energy_per_atom": source["formation_energy_per_atom"],
        "energy_above_hull": None,  # not in the recorded documents
        "is_metal": 1.0,
        "is_stable": float(source["is_stable"]),
    }
    assert record.units["formation_energy_per_atom"] == "eV/atom"
    assert record.extra == {
        "id_origin": "structure_hash",
        "formula_pretty": "Ac2AgPb",
        "spacegroup_symbol": source["symmetry"]["symbol"],
        "spacegroup_number": source["symmetry"]["number"],
    }
    assert len(record.structure["sites"]) == len(source["structure"]["sites"])


# --- paging, snapshot ----------------------------------------------------------------------


def test_paging_fetches_all_documents_in_four_requests(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY, db_version="2025.06.09") as (url, server):
        first = read_source(spec_for(url, chunk_size=50), state_dir=tmp_path / "a")
        pages = [(r.params["_skip"], r.params["_limit"]) for r in server.summary_requests()]
        second = read_source(spec_for(url, chunk_size=50), state_dir=tmp_path / "b")
    assert pages == [("0", "50"), ("50", "50"), ("100", "50"), ("150", "50")]
    assert ids(first) == [expected_id(d) for d in documents]
    assert len(set(ids(first))) == 200
    assert [r.row for r in first.records] == list(range(1, 201))
    assert ids(second) == ids(first)
    snapshot = first.snapshot
    assert snapshot.n_rows == 200
    assert snapshot.database_version == "2025.06.09"
    assert snapshot.location == url
    assert snapshot.kind == "mp" and snapshot.licence == "CC-BY-4.0"
    assert snapshot.query["criteria"] == {}
    assert snapshot.query["chunk_size"] == 50
    assert "structure" in snapshot.query["fields"]
    assert second.snapshot.sha256 == snapshot.sha256


def test_snapshot_hash_follows_the_documents(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, _):
        whole = read_source(spec_for(url, chunk_size=100), state_dir=tmp_path)
    with mp_server(documents[:199], API_KEY) as (url, _):
        fewer = read_source(spec_for(url, chunk_size=100), state_dir=tmp_path)
    assert fewer.snapshot.n_rows == 199
    assert fewer.snapshot.sha256 != whole.snapshot.sha256


def test_limit_stops_after_the_page_holding_the_last_record(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        result = read_source(spec_for(url, chunk_size=50, limit=60), state_dir=tmp_path)
        skips = [r.params["_skip"] for r in server.summary_requests()]
    assert ids(result) == [expected_id(d) for d in documents[:60]]
    assert skips == ["0", "50"]


# --- transient failures ------------------------------------------------------------------------


def test_rate_limit_waits_for_retry_after(
    documents: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(mp_source, "sleep", sleep)
    with mp_server(documents, API_KEY) as (url, server):
        server.faults.append(Fault(status=429, headers={"Retry-After": "1"}))
        started = time.monotonic()
        result = read_source(spec_for(url, chunk_size=100), state_dir=tmp_path)
        elapsed = time.monotonic() - started
        statuses = [(r.params["_skip"], r.status) for r in server.summary_requests()]
    assert slept == [1.0]
    assert elapsed >= 1.0
    assert statuses == [("0", 429), ("0", 200), ("100", 200)]
    assert ids(result) == [expected_id(d) for d in documents]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=500),
        Fault(status=502),
        Fault(status=503),
        Fault(status=504),
        Fault(kind="truncated"),
        Fault(kind="disconnect"),
    ],
    ids=["500", "502", "503", "504", "truncated-json", "disconnect"],
)
def test_transient_failure_is_retried_with_backoff(
    fault: Fault, documents: list[dict[str, Any]], waits: list[float], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        server.faults.extend([fault, fault])
        result = read_source(spec_for(url, chunk_size=100), state_dir=tmp_path)
        skips = [r.params["_skip"] for r in server.summary_requests()]
    policy = mp_source.RETRY_POLICY
    assert waits == [policy.backoff_s, policy.backoff_s * 2]
    assert skips == ["0", "0", "0", "100"]
    assert ids(result) == [expected_id(d) for d in documents]
    assert result.snapshot.n_rows == 200


def test_retries_exhausted_is_one_source_error(
    documents: list[dict[str, Any]], waits: list[float], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        server.fail_from_page(0, Fault(status=502))
        with pytest.raises(SourceError) as caught:
            read_source(spec_for(url, chunk_size=100), state_dir=tmp_path)
        attempts = len(server.summary_requests())
    assert attempts == mp_source.RETRY_POLICY.attempts
    assert len(waits) == mp_source.RETRY_POLICY.attempts - 1
    assert "materials/summary/" in str(caught.value)
    assert "HTTP 502" in str(caught.value)


# --- permanent failures, the key -------------------------------------------------------------


def test_refused_key_is_one_clear_error_that_never_shows_the_key(
    documents: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    waits: list[float],
) -> None:
    monkeypatch.setenv(KEY_ENV, WRONG_KEY)
    caplog.set_level("DEBUG")
    with mp_server(documents, API_KEY) as (url, server):
        with pytest.raises(SourceError) as caught:
            read_source(spec_for(url), state_dir=tmp_path)
        statuses = [r.status for r in server.summary_requests()]
    message = str(caught.value)
    assert "refused the API key" in message and KEY_ENV in message and url in message
    assert statuses == [401]  # not retried
    assert waits == []
    shown = "".join(traceback.format_exception(caught.value))
    out, err = capfd.readouterr()
    for text in (message, shown, caplog.text, out, err):
        assert WRONG_KEY not in text and API_KEY not in text
    saved = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert all(WRONG_KEY.encode() not in data for data in saved)


def test_missing_key_variable_is_named(
    documents: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    with mp_server(documents, API_KEY) as (url, server):
        with pytest.raises(SourceError, match=KEY_ENV):
            read_source(spec_for(url), state_dir=tmp_path)
        assert server.requests == []


def test_malformed_key_is_refused_before_any_request(
    documents: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "short-key")
    with mp_server(documents, API_KEY) as (url, server):
        with pytest.raises(SourceError, match=f"{KEY_ENV} does not hold") as caught:
            read_source(spec_for(url), state_dir=tmp_path)
        assert server.requests == []
    assert "short-key" not in str(caught.value)


def test_rejected_query_is_not_retried(
    documents: list[dict[str, Any]], tmp_path: Path, waits: list[float]
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        server.faults.append(Fault(status=400))
        with pytest.raises(SourceError, match="HTTP 400") as caught:
            read_source(spec_for(url, elements=["Ac"]), state_dir=tmp_path)
        assert len(server.summary_requests()) == 1
    assert "materials/summary/" in str(caught.value)
    assert waits == []


def test_unknown_range_field_is_refused_locally(tmp_path: Path) -> None:
    spec = spec_for("http://127.0.0.1:9/", ranges={"bandgap": {"min": 1.0}})
    with pytest.raises(SourceError, match="ranges.bandgap"):
        read_source(spec, state_dir=tmp_path)


def test_unbuildable_structure_is_a_failure_and_the_read_goes_on(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    served = [dict(d) for d in documents]
    broken = served[7]
    broken["structure"] = {**broken["structure"], "lattice": {"matrix": [[1.0, 0.0]]}}
    with mp_server(served, API_KEY) as (url, _):
        result = read_source(spec_for(url, chunk_size=100), state_dir=tmp_path)
    assert len(result.records) == 199
    (failed,) = result.failures
    assert isinstance(failed, RecordFailure)
    assert failed.row == 8 and failed.source_id == expected_id(broken)
    assert "structure cannot be built" in failed.message and failed.source_id in failed.message
    assert result.records[7].row == 9
    assert result.snapshot.n_rows == 200


# --- resumption ------------------------------------------------------------------------------


def test_killed_read_resumes_from_the_first_missing_page(
    documents: list[dict[str, Any]], tmp_path: Path, waits: list[float]
) -> None:
    state = tmp_path / "state"
    with mp_server(documents, API_KEY) as (url, server):
        spec = spec_for(url, chunk_size=50)
        reference = read_source(spec, state_dir=tmp_path / "reference")

        server.requests.clear()
        server.fail_from_page(2, Fault(status=503))
        read = open_source(spec, state_dir=state)
        seen = []
        with pytest.raises(SourceError, match="documents 101-150"):
            for item in read:
                seen.append(item)
        assert len(seen) == 100
        folders = list((state / "mp").iterdir())
        assert len(folders) == 1
        assert sorted(p.name for p in folders[0].glob("page-*.json")) == [
            "page-00000.json",
            "page-00001.json",
        ]
        saved = json.loads((folders[0] / "page-00001.json").read_text())
        assert saved["skip"] == 50 and saved["total_doc"] == 200 and len(saved["documents"]) == 50

        server.fail_from_page(None)
        server.requests.clear()
        resumed = read_source(spec, state_dir=state)
        skips = [r.params["_skip"] for r in server.summary_requests()]
    assert skips == ["100", "150"]
    assert resumed.records == reference.records
    assert resumed.failures == reference.failures == []
    assert resumed.snapshot.sha256 == reference.snapshot.sha256
    assert resumed.snapshot.n_rows == 200
    # the key is sent in a header only: not in saved pages, records or the snapshot
    assert all(API_KEY.encode() not in p.read_bytes() for p in state.rglob("*") if p.is_file())
    assert API_KEY not in repr(resumed)


def test_complete_saved_read_needs_no_summary_request(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        spec = spec_for(url, chunk_size=100)
        first = read_source(spec, state_dir=tmp_path)
        server.requests.clear()
        again = read_source(spec, state_dir=tmp_path)
        paths = [r.path for r in server.requests]
    assert "/materials/summary/" not in paths
    assert again.records == first.records
    assert again.snapshot.sha256 == first.snapshot.sha256


def test_new_database_version_fetches_everything_again(
    documents: list[dict[str, Any]], tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY, db_version="2025.04.10") as (url, server):
        spec = spec_for(url, chunk_size=100)
        old = read_source(spec, state_dir=tmp_path)
        server.db_version = "2025.06.09"
        server.requests.clear()
        new = read_source(spec, state_dir=tmp_path)
        skips = [r.params["_skip"] for r in server.summary_requests()]
    assert skips == ["0", "100"]
    assert (old.snapshot.database_version, new.snapshot.database_version) == (
        "2025.04.10",
        "2025.06.09",
    )
    assert len(list((tmp_path / "mp").iterdir())) == 2


def test_resume_false_saves_nothing(documents: list[dict[str, Any]], tmp_path: Path) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        spec = spec_for(url, chunk_size=100, resume=False)
        read_source(spec, state_dir=tmp_path)
        read_source(spec, state_dir=tmp_path)
        assert len(server.summary_requests()) == 4
    assert not (tmp_path / "mp").exists()
