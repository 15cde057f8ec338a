"""Reference phases for the hull, read from the Materials Project through mp-api's MPRester.

The loopback server serves the 200 real summary documents of the shared data folder; the
phases expected are computed here from the documents' own structures and values. No test
reaches beyond 127.0.0.1: a guard fails any other connection.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition
from servers.mp import Fault, load_summary_documents, mp_server
from support.network import loopback_only  # noqa: F401  (autouse guard)

import matscreen.tasks.sources.mp as mp_source
from matscreen.tasks.errors import SourceError
from matscreen.tasks.models.references import ReferencePhases, reference_phases
from matscreen.tasks.models.stability import hull_stability
from matscreen.tasks.spec import MPReferenceSpec, StabilitySpec

KEY_ENV = "MATSCREEN_TEST_MP_KEY"
API_KEY = secrets.token_hex(16)

#: The systems of AcBrO and Ac2O3 and all their sub-systems, as the query must name them.
AC_BR_O = "Ac,Br,O,Ac-Br,Ac-O,Br-O,Ac-Br-O"


@pytest.fixture(scope="module")
def documents(data_dir: Path) -> list[dict[str, Any]]:
    return load_summary_documents(data_dir / "materials_project" / "summary_200.jsonl")


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    return API_KEY


@pytest.fixture()
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Waits between retries, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(mp_source, "sleep", recorded.append)
    return recorded


def spec_for(url: str, data_dir: Path, **fields: Any) -> StabilitySpec:
    return StabilitySpec(
        formation_energy="formation_energy_per_atom",
        elements=data_dir / "materials_project" / "elemental_reference_entries.json.gz",
        mp=MPReferenceSpec(endpoint=url, api_key_env=KEY_ENV, **fields),
    )


def elements_of(document: dict[str, Any]) -> set[str]:
    return {sp["element"] for site in document["structure"]["sites"] for sp in site["species"]}


def expected_phases(documents: list[dict[str, Any]], elements: set[str]) -> list[tuple]:
    """(formula, formation energy, origin) of the documents made of ``elements`` only."""
    return sorted(
        (d["formula_pretty"], d["formation_energy_per_atom"], f"mp:{d['formula_pretty']}")
        for d in documents
        if elements_of(d) <= elements
    )


def mp_of(phases: ReferencePhases) -> list[tuple]:
    return sorted(
        (p.formula, p.formation_energy_per_atom, p.origin)
        for p in phases.phases
        if p.origin.startswith("mp:")
    )


def test_phases_of_the_candidates_systems_and_sub_systems(
    documents: list[dict[str, Any]], data_dir: Path, tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY, db_version="2025.06.09") as (url, server):
        # as a campaign calls it: training phases, the candidates' systems, the state folder
        phases = reference_phases(spec_for(url, data_dir), [], {"Ac-Br-O", "Ac-O"}, tmp_path)
        (request,) = server.summary_requests()
    assert request.params["chemsys"] == AC_BR_O
    assert request.params["deprecated"] == "False"
    assert request.params["_fields"] == "material_id,formula_pretty,formation_energy_per_atom"
    expected = expected_phases(documents, {"Ac", "Br", "O"})
    assert len(expected) == 9  # 3 Ac, Ac3Br, AcBr3, Ac2O3, AcO, Ac2Br2O, AcBrO
    assert mp_of(phases) == expected
    assert ("AcBrO", -3.3624750758333306, "mp:AcBrO") in expected
    (snapshot,) = phases.snapshots
    assert snapshot.database_version == "2025.06.09"
    assert snapshot.n_rows == 9 and snapshot.location == url
    assert snapshot.query["chemsys"] == AC_BR_O.split(",")
    # pages are kept where the caller says, keyed by query and release, never with the key
    saved = list((tmp_path / "mp").glob("*/page-00000.json"))
    assert len(saved) == 1
    assert all(API_KEY.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_a_second_read_with_the_same_state_folder_asks_for_nothing(
    documents: list[dict[str, Any]], data_dir: Path, tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        first = reference_phases(spec_for(url, data_dir), systems=["AcBrO"], state_dir=tmp_path)
        server.requests.clear()
        again = reference_phases(spec_for(url, data_dir), systems=["AcBrO"], state_dir=tmp_path)
        assert server.summary_requests() == []
        # a new release is fetched again
        server.db_version = "2099.01.01"
        reference_phases(spec_for(url, data_dir), systems=["AcBrO"], state_dir=tmp_path)
        assert len(server.summary_requests()) == 1
    assert again.phases == first.phases
    assert again.snapshots[0].sha256 == first.snapshots[0].sha256


def test_a_transient_server_error_is_retried(
    documents: list[dict[str, Any]], data_dir: Path, tmp_path: Path, waits: list[float]
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        server.faults.extend([Fault(status=503), Fault(status=502)])
        phases = reference_phases(spec_for(url, data_dir), systems=["AcBrO"], state_dir=tmp_path)
        statuses = [r.status for r in server.summary_requests()]
    assert statuses == [503, 502, 200]
    assert waits == [mp_source.RETRY_POLICY.backoff_s, mp_source.RETRY_POLICY.backoff_s * 2]
    assert mp_of(phases) == expected_phases(documents, {"Ac", "Br", "O"})


def test_many_systems_are_split_over_queries_and_pages(
    documents: list[dict[str, Any]],
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mp_source, "CHEMSYS_PER_QUERY", 4)
    with mp_server(documents, API_KEY) as (url, server):
        phases = reference_phases(
            spec_for(url, data_dir, chunk_size=2), systems=["AcBrO"], state_dir=tmp_path
        )
        sent = [(r.params["chemsys"], r.params["_skip"]) for r in server.summary_requests()]
    assert sent == [
        ("Ac,Br,O,Ac-Br", "0"),
        ("Ac,Br,O,Ac-Br", "2"),
        ("Ac,Br,O,Ac-Br", "4"),
        ("Ac-O,Br-O,Ac-Br-O", "0"),
        ("Ac-O,Br-O,Ac-Br-O", "2"),
    ]
    assert mp_of(phases) == expected_phases(documents, {"Ac", "Br", "O"})
    assert len(list((tmp_path / "mp").iterdir())) == 2


def test_hull_against_materials_project_phases_equals_pymatgens(
    documents: list[dict[str, Any]], data_dir: Path, tmp_path: Path
) -> None:
    with mp_server(documents, API_KEY) as (url, _):
        phases = reference_phases(
            spec_for(url, data_dir), systems=["AcBrO", "Ac3BrO4"], state_dir=tmp_path
        )
    candidates = [("a", "AcBrO", -3.30, -3.40, -3.20), ("b", "Ac3BrO4", -3.2, -3.3, -3.1)]
    table, failures = hull_stability(candidates, phases)
    assert failures == {}
    # pymatgen on the formation-energy scale: elements at zero, MP phases as served
    entries = [PDEntry(Composition(el), 0.0) for el in ("Ac", "Br", "O")]
    for d in documents:
        if elements_of(d) <= {"Ac", "Br", "O"}:
            composition = Composition(d["formula_pretty"])
            energy = d["formation_energy_per_atom"] * composition.num_atoms
            entries.append(PDEntry(composition, energy, name=d["formula_pretty"]))
    diagram = PhaseDiagram(entries)
    for (_, formula, energy, _, _), row in zip(candidates, table.itertuples(), strict=True):
        composition = Composition(formula)
        candidate = PDEntry(composition, energy * composition.num_atoms)
        decomposition, expected = diagram.get_decomp_and_e_above_hull(
            candidate, allow_negative=True
        )
        assert row.pred_energy_above_hull == pytest.approx(expected, abs=1e-9)
        assert sorted(row.competing_phases.split(" + ")) == sorted(
            e.composition.reduced_formula for e in decomposition
        )
    first = table.iloc[0]
    assert first["pred_energy_above_hull"] == pytest.approx(-3.30 + 3.3624750758333306)
    assert (first["competing_phases"], first["competing_origins"]) == ("AcBrO", "mp:AcBrO")
    assert table.iloc[1]["competing_phases"] == "AcBrO + Ac2O3"


def test_a_candidate_read_from_the_materials_project_is_not_its_own_reference(
    documents: list[dict[str, Any]], data_dir: Path, tmp_path: Path
) -> None:
    served = [{**d, "material_id": f"mp-{1000 + n}"} for n, d in enumerate(documents)]
    ac_br_o = next(n for n, d in enumerate(documents) if d["formula_pretty"] == "AcBrO")
    with mp_server(served, API_KEY) as (url, _):
        phases = reference_phases(spec_for(url, data_dir), systems=["AcBrO"], state_dir=tmp_path)
    assert f"mp:mp-{1000 + ac_br_o}" in {p.origin for p in phases.phases}
    own = f"mp:mp-{1000 + ac_br_o}"  # the candidate's id: source "mp", its material id
    table, _ = hull_stability(
        [(own, "AcBrO", -3.30, -3.4, -3.2), ("new", "AcBrO", -3.30, -3.4, -3.2)], phases
    )
    mine, other = table.iloc[0], table.iloc[1]
    assert "AcBrO" not in mine["competing_phases"].split(" + ")
    assert mine["pred_energy_above_hull"] < 0  # the known AcBrO is left out of its own hull
    assert other["competing_origins"] == f"mp:mp-{1000 + ac_br_o}"
    assert other["pred_energy_above_hull"] == pytest.approx(-3.30 + 3.3624750758333306)


def test_no_request_without_a_key_or_without_candidates(
    documents: list[dict[str, Any]], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mp_server(documents, API_KEY) as (url, server):
        nothing = reference_phases(
            spec_for(url, data_dir), systems=["Og-O", "Sr(Ti"], state_dir=tmp_path
        )
        assert nothing.snapshots == () and server.requests == []
        monkeypatch.delenv(KEY_ENV)
        with pytest.raises(SourceError, match=KEY_ENV):
            reference_phases(spec_for(url, data_dir), systems=["AcBrO"], state_dir=tmp_path)
        assert server.requests == []
