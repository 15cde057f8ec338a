"""The OPTIMADE source against the OPTIMADE reference server and a recorded provider response.

The reference server (the ``optimade`` package's own, on loopback) serves the real OQMD and
Alexandria records of the shared data folder, converted to OPTIMADE structure entries by
``servers.optimade``. Expected results are computed here from the JSON-lines files
themselves, never from what the server answers.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import optimade
import pytest
from pymatgen.core import Composition, Structure
from servers.optimade import (
    ALEXANDRIA_FIELDS,
    OQMD_FIELDS,
    PROVIDER,
    info_from_meta,
    listening_socket,
    optimade_documents,
    read_jsonl,
    reference_server,
    replay_server,
    split_pages,
)

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.sources.http import JsonClient
from matscreen.tasks.sources.optimade import LISTING_FIELDS, id_filter, next_link, versioned_base
from matscreen.tasks.sources.records import RefreshCounts
from matscreen.tasks.spec import OptimadeSourceSpec

OQMD_PROPERTIES = {
    "band_gap": {"field": "_oqmd_band_gap", "unit": "eV"},
    "formation_energy_per_atom": {"field": "_oqmd_delta_e", "unit": "eV/atom"},
    "energy_above_hull": {"field": "_oqmd_stability", "unit": "eV/atom"},
}
ALEXANDRIA_PROPERTIES = {
    "band_gap": {"field": "_alexandria_band_gap", "unit": "eV"},
    "formation_energy_per_atom": {"field": "_alexandria_e_form", "unit": "eV/atom"},
    "energy_above_hull": {"field": "_alexandria_e_above_hull", "unit": "eV/atom"},
}


def make_spec(base_url: str, **settings: Any) -> OptimadeSourceSpec:
    return OptimadeSourceSpec(
        kind="optimade",
        name=settings.pop("name", "optimade_test"),
        base_url=base_url,
        licence="CC-BY-4.0",
        citation=["Saal et al., JOM 65, 1501 (2013)", "Schmidt et al., Mater. Today Phys. (2022)"],
        **settings,
    )


@pytest.fixture(scope="module")
def oqmd_rows(data_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(data_dir / "optimade" / "oqmd_200.jsonl")


@pytest.fixture(scope="module")
def alexandria_rows(data_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(data_dir / "optimade" / "alexandria_98.jsonl")


@pytest.fixture(scope="module")
def optimade_url(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The reference server, loaded with the 200 OQMD and 98 Alexandria records."""
    workdir = tmp_path_factory.mktemp("optimade_server")
    with reference_server(optimade_documents(data_dir), workdir) as url:
        yield url


@pytest.fixture(scope="module")
def mcloud_response(data_dir: Path) -> dict[str, Any]:
    """The recorded Materials Cloud answer: 2 Si-O structures, the second disordered."""
    return json.loads((data_dir / "optimade" / "mcloud_structures_SiO.json").read_text())


def oqmd_elements(row: dict[str, Any]) -> set[str]:
    return {site.split("@")[0].strip() for site in row["sites"]}


def alexandria_elements(row: dict[str, Any]) -> set[str]:
    return {species["element"] for site in row["structure"]["sites"] for species in site["species"]}


@pytest.fixture()
def structure_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs of every ``structures`` page the client asks for during the test."""
    asked: list[str] = []
    get_json = JsonClient.get_json

    def counting(self: JsonClient, url: str, params: dict[str, Any] | None = None) -> Any:
        if "/structures" in url:
            asked.append(url)
        return get_json(self, url, params)

    monkeypatch.setattr(JsonClient, "get_json", counting)
    return asked


@pytest.fixture()
def structure_queries(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The query (parameters and those of the URL) of every ``structures`` request asked."""
    asked: list[dict[str, str]] = []
    get_json = JsonClient.get_json

    def recording(self: JsonClient, url: str, params: dict[str, Any] | None = None) -> Any:
        if "/structures" in url:
            query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
            asked.append({**query, **{key: str(value) for key, value in (params or {}).items()}})
        return get_json(self, url, params)

    monkeypatch.setattr(JsonClient, "get_json", recording)
    return asked


def full_document_queries(queries: list[dict[str, str]]) -> list[dict[str, str]]:
    """The queries that asked for full entries, not for the listing of ids."""
    return [query for query in queries if query["response_fields"] != LISTING_FIELDS]


# --- through the reference server ---------------------------------------------------------------


def test_element_filter_returns_exactly_the_matching_records(
    optimade_url: str,
    oqmd_rows: list[dict[str, Any]],
    alexandria_rows: list[dict[str, Any]],
) -> None:
    expected = {f"oqmd-{row['entry_id']}" for row in oqmd_rows if "O" in oqmd_elements(row)}
    expected |= {row["entry_id"] for row in alexandria_rows if "O" in alexandria_elements(row)}
    assert len(expected) == 31  # all oxides of the sample are OQMD records

    spec = make_spec(optimade_url, filter='elements HAS ALL "O"', properties=OQMD_PROPERTIES)
    result = read_source(spec)

    assert result.failures == []
    assert {record.source_id for record in result.records} == expected
    assert [record.row for record in result.records] == list(range(1, 32))
    for record in result.records:
        assert "O" in Composition(record.formula)
        assert record.extra["provider"] == PROVIDER["prefix"]
        assert record.extra["optimade_id"] == record.source_id
    snapshot = result.snapshot
    assert snapshot.n_rows == 31
    assert snapshot.location == f"{optimade_url}/v1/structures"
    assert snapshot.query["filter"] == 'elements HAS ALL "O"'
    assert snapshot.database_version == (
        f"optimade {optimade.__api_version__}; {PROVIDER['prefix']}; "
        f"implementation OPTIMADE Python Tools {optimade.__version__}"
    )


def test_pagination_follows_next_links_and_reads_every_record_once(
    optimade_url: str,
    oqmd_rows: list[dict[str, Any]],
    alexandria_rows: list[dict[str, Any]],
    structure_requests: list[str],
) -> None:
    expected = {f"oqmd-{row['entry_id']}" for row in oqmd_rows if "Tl" in oqmd_elements(row)}
    expected |= {row["entry_id"] for row in alexandria_rows if "Tl" in alexandria_elements(row)}
    assert len(expected) == 51

    result = read_source(make_spec(optimade_url, filter='elements HAS "Tl"', page_limit=4))

    ids = [record.source_id for record in result.records]
    assert len(ids) == len(set(ids)) == 51
    assert set(ids) == expected
    assert len(structure_requests) == math.ceil(51 / 4)
    # Every page after the first was reached through the server's links.next.
    assert all("page_offset=" in url for url in structure_requests[1:])
    assert result.snapshot.n_rows == 51


def test_numeric_filter_on_a_provider_field_and_properties_with_units(
    optimade_url: str, oqmd_rows: list[dict[str, Any]]
) -> None:
    by_id = {f"oqmd-{row['entry_id']}": row for row in oqmd_rows}
    expected = {key for key, row in by_id.items() if (row["band_gap"] or 0.0) > 1}
    assert len(expected) == 17

    spec = make_spec(optimade_url, filter="_oqmd_band_gap > 1", properties=OQMD_PROPERTIES)
    result = read_source(spec)

    assert {record.source_id for record in result.records} == expected
    for record in result.records:
        row = by_id[record.source_id]
        assert record.properties == {
            "band_gap": row["band_gap"],
            "formation_energy_per_atom": row["delta_e"],
            "energy_above_hull": row["stability"],
        }
        assert record.units == {
            "band_gap": "eV",
            "formation_energy_per_atom": "eV/atom",
            "energy_above_hull": "eV/atom",
        }
    assert set(OQMD_FIELDS) <= set(result.snapshot.query["response_fields"].split(","))


def test_oqmd_structures_equal_the_source_records(
    optimade_url: str, oqmd_rows: list[dict[str, Any]]
) -> None:
    spec = make_spec(
        optimade_url, filter='id STARTS WITH "oqmd-"', page_limit=80, properties=OQMD_PROPERTIES
    )
    result = read_source(spec)

    assert result.failures == []
    assert len(result.records) == len(oqmd_rows) == 200
    records = {record.source_id: record for record in result.records}
    for row in oqmd_rows:
        record = records[f"oqmd-{row['entry_id']}"]
        structure = Structure.from_dict(record.structure)
        elements = [site.split("@")[0].strip() for site in row["sites"]]
        assert structure.composition == Composition(Counter(elements))
        assert record.formula == Composition(row["name"]).reduced_formula
        assert np.allclose(structure.lattice.matrix, row["cell"])
        # OQMD's cart_coords hold fractional coordinates.
        shift = structure.frac_coords - np.array(row["cart_coords"])
        assert np.allclose(shift - np.round(shift), 0.0, atol=1e-6)
        assert record.properties["formation_energy_per_atom"] == row["delta_e"]
    missing_gap = [row for row in oqmd_rows if row["band_gap"] is None]
    assert len(missing_gap) == 1
    assert records[f"oqmd-{missing_gap[0]['entry_id']}"].properties["band_gap"] is None


def test_alexandria_structures_equal_the_source_records(
    optimade_url: str, alexandria_rows: list[dict[str, Any]]
) -> None:
    spec = make_spec(
        optimade_url,
        name="alexandria",
        filter='id STARTS WITH "agm"',
        properties=ALEXANDRIA_PROPERTIES,
    )
    result = read_source(spec)

    assert result.failures == []
    assert len(result.records) == len(alexandria_rows) == 98
    records = {record.source_id: record for record in result.records}
    for row in alexandria_rows:
        record = records[row["entry_id"]]
        source = Structure.from_dict(row["structure"])
        structure = Structure.from_dict(record.structure)
        assert structure.composition == source.composition
        assert np.allclose(structure.lattice.matrix, source.lattice.matrix)
        assert np.allclose(structure.cart_coords, source.cart_coords, atol=1e-6)
        targets = row["targets"]["regression"]
        assert record.properties == {
            name: targets[ALEXANDRIA_FIELDS[prop["field"]]]
            for name, prop in ALEXANDRIA_PROPERTIES.items()
        }
        assert record.extra["last_modified"].endswith("Z")


def test_limit_stops_reading_and_a_versioned_base_url_is_accepted(
    optimade_url: str, structure_requests: list[str]
) -> None:
    result = read_source(make_spec(f"{optimade_url}/v1/", filter="nelements = 2", limit=5))

    assert len(result.records) == 5
    assert all(len(Composition(record.formula)) == 2 for record in result.records)
    assert len(structure_requests) == 1
    assert result.snapshot.query["page_limit"] == 5
    assert result.snapshot.location == f"{optimade_url}/v1/structures"


def test_provider_warnings_are_logged(optimade_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="matscreen.tasks.sources.optimade"):
        result = read_source(make_spec(optimade_url, filter="_zzz_hardness > 1"))

    # The server treats a field of an unknown provider as unknown: nothing matches, and it
    # says why in meta.warnings, which must reach the log.
    assert result.records == [] and result.failures == []
    [message] = [r.getMessage() for r in caplog.records if "warns" in r.getMessage()]
    assert "'_zzz_hardness' has an unrecognised prefix" in message


def test_a_wrong_base_url_is_a_source_error_naming_the_url(optimade_url: str) -> None:
    with pytest.raises(SourceError, match=r"optimade_test: .*/nowhere/v1/info answered HTTP 404"):
        read_source(make_spec(f"{optimade_url}/nowhere"))


def test_an_invalid_filter_is_a_source_error(optimade_url: str) -> None:
    with pytest.raises(SourceError, match=r"/v1/structures answered HTTP 400"):
        read_source(make_spec(optimade_url, filter="elements HAS HAS"))


# --- incremental re-runs ------------------------------------------------------------------------


def test_rerun_fetches_only_new_and_changed_entries_and_drops_removed_ones(
    data_dir: Path, tmp_path: Path, structure_queries: list[dict[str, str]]
) -> None:
    documents = optimade_documents(data_dir)
    oxides = [d for d in documents if "O" in d["attributes"]["elements"]]
    assert len(oxides) == 31
    spec = make_spec("http://placeholder", filter='elements HAS "O"', page_limit=10)
    state = tmp_path / "state"

    # The database as the provider updates it: one oxide recomputed, another withdrawn.
    updated = copy.deepcopy(documents)
    changed, removed = (d for d in updated if d["id"] in (oxides[4]["id"], oxides[9]["id"]))
    changed["attributes"]["last_modified"] = "2031-01-01T00:00:00Z"
    changed["attributes"]["_oqmd_band_gap"] = 4.25
    updated.remove(removed)

    # Two servers one after the other on one socket: the provider's URL does not change.
    with listening_socket() as sock:
        with reference_server(documents, _folder(tmp_path / "before"), listening=sock) as url:
            spec = spec.model_copy(update={"base_url": url})
            first = read_source(spec, state)
            first_queries = list(structure_queries)
            structure_queries.clear()
            second = read_source(spec, state)
            second_queries = list(structure_queries)
        with reference_server(updated, _folder(tmp_path / "after"), listening=sock) as url:
            assert url == spec.base_url
            structure_queries.clear()
            third = read_source(spec, state)
            third_queries = list(structure_queries)
            fresh = read_source(spec.model_copy(update={"incremental": False}), state)

    # The first read, with nothing saved, reads the query in full: 31 entries, 4 pages.
    assert first.changes == RefreshCounts(31, new=31, changed=0, unchanged=0, removed=0, fetched=31)
    assert len(first_queries) == len(full_document_queries(first_queries)) == 4
    assert {r.source_id for r in first.records} == {d["id"] for d in oxides}

    # The second lists ids and last_modified only, and fetches no full document.
    assert second.changes == RefreshCounts(31, new=0, changed=0, unchanged=31, removed=0, fetched=0)
    assert len(second_queries) == 4 and full_document_queries(second_queries) == []
    assert second.records == first.records and second.failures == first.failures == []
    assert second.snapshot.sha256 == first.snapshot.sha256

    # The third fetches the recomputed entry alone, and drops the withdrawn one.
    assert third.changes == RefreshCounts(30, new=0, changed=1, unchanged=29, removed=1, fetched=1)
    [fetch] = full_document_queries(third_queries)
    assert fetch["filter"] == f'id="{changed["id"]}"'
    assert fetch["response_fields"] == first.snapshot.query["response_fields"]
    by_id = {record.source_id: record for record in third.records}
    assert removed["id"] not in by_id and len(by_id) == 30
    assert by_id[changed["id"]].extra["last_modified"] == "2031-01-01T00:00:00Z"

    # ... and gives what a full read of the updated database gives, to the snapshot hash.
    assert fresh.changes is None
    assert third.records == fresh.records and third.failures == fresh.failures
    assert third.snapshot.sha256 == fresh.snapshot.sha256 != first.snapshot.sha256
    assert third.snapshot.n_rows == fresh.snapshot.n_rows == 30


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_entries_without_last_modified_are_always_fetched_again(
    mcloud_response: dict[str, Any], tmp_path: Path, structure_queries: list[dict[str, str]]
) -> None:
    response = copy.deepcopy(mcloud_response)
    del response["data"][1]["attributes"]["last_modified"]  # the disordered entry, "250"
    spec = make_spec("http://placeholder", name="mcloud", incremental=True)
    with replay_server([response], info_from_meta(response)) as server:
        spec = spec.model_copy(update={"base_url": server.base_url})
        first = read_source(spec, tmp_path)
        structure_queries.clear()
        second = read_source(spec, tmp_path)

    assert second.changes == RefreshCounts(2, new=0, changed=0, unchanged=2, removed=0, fetched=1)
    [listing, fetch] = structure_queries
    assert listing["response_fields"] == LISTING_FIELDS
    assert fetch["filter"] == 'id="250"'
    assert second.records == first.records and second.failures == first.failures
    assert second.snapshot.sha256 == first.snapshot.sha256


def test_unreadable_saved_entries_are_fetched_again(optimade_url: str, tmp_path: Path) -> None:
    spec = make_spec(optimade_url, filter='elements HAS "Tl"', page_limit=20)
    first = read_source(spec, tmp_path)
    [saved] = tmp_path.glob("optimade/*/entries.json")
    saved.write_text(saved.read_text()[:1000])  # as if cut short by a full disk

    second = read_source(spec, tmp_path)

    assert second.changes == RefreshCounts(
        51, new=51, changed=0, unchanged=0, removed=0, fetched=51
    )
    assert second.records == first.records
    assert second.snapshot.sha256 == first.snapshot.sha256


def test_id_filter_quotes_ids() -> None:
    assert id_filter(["oqmd-1", "agm002"]) == 'id="oqmd-1" OR id="agm002"'
    assert id_filter(['odd"id\\']) == r'id="odd\"id\\"'


# --- the recorded Materials Cloud response ------------------------------------------------------


def test_recorded_response_ordered_entry_is_a_record_disordered_one_a_failure(
    mcloud_response: dict[str, Any],
) -> None:
    ordered = mcloud_response["data"][0]["attributes"]
    with replay_server([mcloud_response], info_from_meta(mcloud_response)) as server:
        spec = make_spec(server.base_url, name="mcloud", filter='elements HAS ALL "Si","O"')
        result = read_source(spec)

    assert [record.source_id for record in result.records] == ["903"]
    record = result.records[0]
    structure = Structure.from_dict(record.structure)
    assert structure.composition == Composition(Counter(ordered["species_at_sites"]))
    assert structure.composition.reduced_formula == "Na4Al3Si3ClO12"
    assert np.allclose(structure.cart_coords, ordered["cartesian_site_positions"])
    assert record.extra["immutable_id"] == "fd2f024e-7383-4c1f-ab43-822325e90738"
    assert record.extra["last_modified"] == "2021-09-13T15:45:35Z"
    assert record.extra["chemical_formula_reduced"] == "Al3ClNa4O12Si3"
    assert record.extra["provider"] == "mcloud"

    [failure] = result.failures
    assert (failure.source_id, failure.row, failure.stage) == ("250", 2, "ingest")
    assert failure.message.startswith("mcloud:250: disordered structure")
    assert "'EuX' = Eu 0.1666 + vacancy 0.8334" in failure.message
    assert "'AlSi' = Si 0.5 + Al 0.5" in failure.message

    assert result.snapshot.n_rows == 2
    assert result.snapshot.database_version == (
        "optimade 1.1.0; mcloud; implementation aiida-optimade 0.19.0+mcloud"
    )


def test_http_500_once_is_retried_and_link_objects_are_followed(
    mcloud_response: dict[str, Any],
) -> None:
    pages = split_pages(mcloud_response, 1)
    with replay_server(
        pages, info_from_meta(mcloud_response), fail_first=1, next_as_object=True
    ) as server:
        result = read_source(make_spec(server.base_url, name="mcloud"))

    paths = [path.split("?")[0] for path in server.requests]
    assert paths == ["/v1/info", "/v1/info", "/v1/structures", "/v1/structures"]
    assert server.requests[-1].endswith("?replay_page=1")
    assert [record.source_id for record in result.records] == ["903"]
    assert [failure.source_id for failure in result.failures] == ["250"]


def test_an_entry_the_adapter_cannot_convert_is_a_failure_not_a_crash(
    mcloud_response: dict[str, Any],
) -> None:
    unknown_species = copy.deepcopy(mcloud_response["data"][0])
    unknown_species["id"] = "903-unknown-species"
    unknown_species["attributes"]["species_at_sites"][0] = "Zz"
    no_timestamp = copy.deepcopy(mcloud_response["data"][0])
    no_timestamp["id"] = "903-no-timestamp"
    del no_timestamp["attributes"]["last_modified"]
    response = {**mcloud_response, "data": [unknown_species, no_timestamp]}
    with replay_server([response], info_from_meta(response)) as server:
        result = read_source(make_spec(server.base_url, name="mcloud"))

    assert result.records == []
    messages = {failure.source_id: failure.message for failure in result.failures}
    assert messages["903-unknown-species"].startswith("mcloud:903-unknown-species: ")
    assert messages["903-no-timestamp"].startswith(
        "mcloud:903-no-timestamp: not a valid OPTIMADE structure entry"
    )
    assert "last_modified" in messages["903-no-timestamp"]


def test_an_answer_without_data_is_a_source_error_naming_the_url(
    mcloud_response: dict[str, Any],
) -> None:
    with replay_server(
        [{"meta": mcloud_response["meta"]}], info_from_meta(mcloud_response)
    ) as server:
        with pytest.raises(
            SourceError, match=r"/v1/structures did not answer an OPTIMADE response"
        ):
            read_source(make_spec(server.base_url, name="mcloud"))


# --- link handling ------------------------------------------------------------------------------


def test_versioned_base_and_next_link_forms() -> None:
    assert versioned_base("https://optimade.materialscloud.org/main") == (
        "https://optimade.materialscloud.org/main/v1"
    )
    assert versioned_base("https://example.org/optimade/v2/") == "https://example.org/optimade/v2"
    url = "https://example.org/v1/structures?page_limit=2"
    assert next_link({"links": {"next": None}}, url, "s") is None
    assert next_link({"meta": {}}, url, "s") is None
    assert next_link({"links": {"next": {"href": "/v1/structures?page_offset=2"}}}, url, "s") == (
        "https://example.org/v1/structures?page_offset=2"
    )
    with pytest.raises(SourceError, match="links.next is not a URL"):
        next_link({"links": {"next": 7}}, url, "s")
