"""AFLOW: aflowlib entries from the real example files, and AFLUX through a loopback server.

The data folder holds aflowlib entries of six catalogues as ``.json`` and ``.out`` files. Only
the LIB3 pair is one entry written both ways (same auid); the other ``.json``/``.out`` pairs
of a catalogue hold different entries, so they are compared keyword shape by keyword shape,
and the LIB3 pair value by value. ``aflux_data0.json`` and ``aflux_data1.json`` are two
recorded AFLUX pages (entries 1-20 and 21-40 of 912) asking for compound, auid, aurl, Egap
and a thermal conductivity — no geometry, so none of their entries carries a structure.
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from servers.aflux import AfluxServer, load_example_entries

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.sources.aflow import aflux_query, aflux_url, read_aflux_page
from matscreen.tasks.sources.aflowlib import parse_aflowlib_entry, parse_aflowlib_out
from matscreen.tasks.sources.base import SnapshotBuilder, open_source, read_source
from matscreen.tasks.sources.records import RecordFailure, RefreshCounts, StructureRecord
from matscreen.tasks.spec import AflowSourceSpec, RangeSpec

CATALOGUES_WITH_BOTH = ("icsd", "lib1", "lib2", "lib3", "lib6")
ENTRY_FILES = [f"{c}_example.json" for c in ("icsd", "lib1", "lib2", "lib3", "lib6", "lib7")] + [
    f"{c}_example.out" for c in ("icsd", "lib1", "lib2", "lib3", "lib5", "lib6")
]

#: The auids of the eleven distinct entries in the example files (lib3's two files share one).
AUIDS = {
    "icsd.json": "aflow:fc70fda6652015cb",  # Ac2Br6
    "icsd.out": "aflow:6cd78dd3c73693e6",  # Ag2As2F12Se6
    "lib1.json": "aflow:075dbbb922a0e4d7",  # Ac1
    "lib1.out": "aflow:0241eab8a156fac2",  # Ba2
    "lib2.json": "aflow:30b403721b9ffa88",  # Al2Ca2
    "lib2.out": "aflow:496b9b0c3a2a92c2",  # Ag2Al1
    "lib3": "aflow:0003b1ab0ca0d60a",  # Cr1O3Ru1
    "lib5.out": "aflow:a6c7d01eac5142bb",  # Ce1La1O8Pr1Y1
    "lib6.json": "aflow:49f48eb8dc45000d",  # B10Cr1Hf1Mo1Nb1Ta1
    "lib6.out": "aflow:1a2f368a3f313e43",  # Cr1Cu1Mo1N5Ni1V1
    "lib7.json": "aflow:d444c5799cae883d",  # Hf1Nb1O15Sn1Sr5Ti1Zr1
}


@pytest.fixture(scope="module")
def aflow_dir(data_dir: Path) -> Path:
    return data_dir / "aflow"


def load_entry(path: Path) -> dict[str, Any]:
    """An example file's entry: the JSON, or the .out text through the parser under test."""
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return parse_aflowlib_out(path.read_text(), path.name)


def raw_field(path: Path, keyword: str) -> str | None:
    """A keyword's value as written in the file, read without the parser under test."""
    text = path.read_text()
    if path.suffix == ".json":
        value = json.loads(text).get(keyword)
        return None if value is None else str(value)
    match = re.search(rf"(?:^|\|)\s*{re.escape(keyword)}=([^|]*)", text)
    return match.group(1).strip() if match else None


def shape(value: Any) -> str:
    """The JSON shape of a value: n(umber), s(tring), or [shapes of the items]."""
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int | float):
        return "n"
    if isinstance(value, str):
        return "s"
    if isinstance(value, list):
        return "[" + "|".join(sorted({shape(item) for item in value})) + "]"
    return type(value).__name__


# --- aflowlib entries ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENTRY_FILES)
def test_every_example_entry_builds_its_relaxed_cell(aflow_dir: Path, name: str) -> None:
    path = aflow_dir / name
    entry = load_entry(path)
    structure, properties, extra = parse_aflowlib_entry(entry, name)

    assert (
        structure.composition.reduced_composition
        == Composition(raw_field(path, "compound")).reduced_composition
    )
    assert len(structure) == int(raw_field(path, "natoms"))
    # The element order (species x composition) is right if the symmetry AFLOW found comes
    # back: a wrong assignment of elements to positions breaks the space group.
    spacegroup = SpacegroupAnalyzer(structure, symprec=1e-3).get_space_group_number()
    assert spacegroup == int(raw_field(path, "spacegroup_relax"))
    assert structure.volume == pytest.approx(float(raw_field(path, "volume_cell")), rel=1e-5)
    assert structure.density == pytest.approx(float(raw_field(path, "density")), rel=5e-4)
    # geometry gives the cell up to a rotation; interatomic vectors must keep their lengths.
    cartesian = np.array(entry["positions_cartesian"], dtype=float).reshape(-1, 3)
    expected = np.linalg.norm(cartesian[:, None] - cartesian[None], axis=-1)
    built = np.linalg.norm(structure.cart_coords[:, None] - structure.cart_coords[None], axis=-1)
    np.testing.assert_allclose(built, expected, atol=1e-4)

    for keyword, prop in (
        ("Egap", "band_gap"),
        ("enthalpy_formation_atom", "formation_energy_per_atom"),
    ):
        raw = raw_field(path, keyword)
        assert properties[prop] == (None if raw is None else float(raw))
    assert extra["auid"] == raw_field(path, "auid")
    assert extra["aurl"] == raw_field(path, "aurl")
    assert extra["compound"] == raw_field(path, "compound")
    assert extra["spacegroup_relax"] == spacegroup
    assert extra["aflowlib_version"] == raw_field(path, "aflowlib_version")
    assert extra.get("Egap_type") == raw_field(path, "Egap_type")


def test_example_values_are_the_files(aflow_dir: Path) -> None:
    values = {
        name: parse_aflowlib_entry(load_entry(aflow_dir / name))[1]
        for name in (
            "icsd_example.json",
            "icsd_example.out",
            "lib3_example.json",
            "lib7_example.json",
        )
    }
    assert values["icsd_example.json"] == {
        "band_gap": 4.1084,
        "formation_energy_per_atom": -2.13553,
    }
    assert values["icsd_example.out"] == {"band_gap": 1.8648, "formation_energy_per_atom": None}
    assert values["lib3_example.json"] == {"band_gap": 0.0, "formation_energy_per_atom": None}
    assert values["lib7_example.json"] == {"band_gap": None, "formation_energy_per_atom": -2.96113}


def test_only_lib3_files_hold_the_same_entry(aflow_dir: Path) -> None:
    auids = {
        catalogue: {
            load_entry(aflow_dir / f"{catalogue}_example.{suffix}")["auid"]
            for suffix in ("json", "out")
        }
        for catalogue in CATALOGUES_WITH_BOTH
    }
    assert auids["lib3"] == {AUIDS["lib3"]}
    for catalogue in ("icsd", "lib1", "lib2", "lib6"):
        assert auids[catalogue] == {AUIDS[f"{catalogue}.json"], AUIDS[f"{catalogue}.out"]}


def test_lib3_out_and_json_give_the_same_structure_and_values(aflow_dir: Path) -> None:
    from_json = parse_aflowlib_entry(load_entry(aflow_dir / "lib3_example.json"))
    from_out = parse_aflowlib_entry(load_entry(aflow_dir / "lib3_example.out"))

    a, b = from_json[0], from_out[0]
    np.testing.assert_allclose(a.lattice.parameters, b.lattice.parameters, atol=1e-6)
    np.testing.assert_allclose(a.frac_coords, b.frac_coords, atol=1e-6)
    assert (
        [s.symbol for s in a.species]
        == [s.symbol for s in b.species]
        == ["Cr", "O", "O", "O", "Ru"]
    )
    assert StructureMatcher().fit(a, b)
    assert from_json[1] == from_out[1]
    assert from_json[2] == from_out[2]


def test_lib3_out_parses_to_its_json_field_by_field(aflow_dir: Path) -> None:
    parsed = parse_aflowlib_out((aflow_dir / "lib3_example.out").read_text())
    reference = json.loads((aflow_dir / "lib3_example.json").read_text())

    # aflowlib.out also carries the legacy space-separated "stoich" line.
    assert set(parsed) == set(reference) | {"stoich"}
    assert parsed["stoich"] == [0.2, 0.6, 0.2]
    # The .json writer rounds a few values that aflowlib.out keeps in full.
    rounded = {
        "geometry": 1e-6,
        "geometry_orig": 1e-6,
        "nbondxx": 1e-4,
        "bader_atomic_volumes": 5e-3,
    }
    for keyword, value in reference.items():
        assert shape(parsed[keyword]) == shape(value), keyword
        if keyword in rounded:
            np.testing.assert_allclose(parsed[keyword], value, atol=rounded[keyword])
        else:
            assert parsed[keyword] == value, keyword
    assert parsed["positions_fractional"] == [
        [0, 0, 0],
        [0, 0.5, 0.5],
        [0.5, 0, 0.5],
        [0.5, 0.5, 0],
        [0.5, 0.5, 0.5],
    ]
    assert parsed["kpoints"][3] == 20 and parsed["ldau_TLUJ"] == [
        2,
        [2, 0, 2],
        [3.5, 0, 3],
        [0, 0, 0],
    ]
    assert parsed["Wyckoff_letters"] == [["a"], ["c"], ["b"]]


@pytest.mark.parametrize("catalogue", CATALOGUES_WITH_BOTH)
def test_out_keywords_have_the_shapes_of_json_keywords(aflow_dir: Path, catalogue: str) -> None:
    parsed = parse_aflowlib_out((aflow_dir / f"{catalogue}_example.out").read_text())
    reference = json.loads((aflow_dir / f"{catalogue}_example.json").read_text())
    shared = set(parsed) & set(reference)
    assert len(shared) > 120
    mismatched = {
        k: (shape(parsed[k]), shape(reference[k]))
        for k in shared
        if shape(parsed[k]) != shape(reference[k])
    }
    assert mismatched == {}


def test_single_values_stay_lists_where_json_has_lists(aflow_dir: Path) -> None:
    lib1 = parse_aflowlib_out((aflow_dir / "lib1_example.out").read_text())  # elemental Ba
    assert lib1["species"] == ["Ba"] and lib1["composition"] == [2] and lib1["dft_type"] == ["LDA"]
    assert lib1["prototype"] == "A3" and lib1["natoms"] == 2
    lib2 = parse_aflowlib_out((aflow_dir / "lib2_example.out").read_text())
    assert lib2["prototype"] == "8"  # a prototype name, not a number
    assert lib2["kpoints"] == [[16, 16, 16]]
    assert "ael_stiffness_tensor" not in lib2  # written with an empty value


def test_entry_with_numbers_as_text_reads_the_same(aflow_dir: Path) -> None:
    # AFLUX answers have given numbers and lists as text ("Egap": "6.8531"); an entry holding
    # the lib5 file's raw text values must give the same structure and values.
    text = (aflow_dir / "lib5_example.out").read_text()
    as_text = dict(field.strip().split("=", 1) for field in text.split(" | "))
    assert as_text["geometry"] == "3.9241601,5.3959954,7.8482279,90,90,90"
    structure, properties, extra = parse_aflowlib_entry(as_text)
    reference = parse_aflowlib_entry(parse_aflowlib_out(text))
    assert structure == reference[0] and len(structure) == 12
    assert properties == reference[1] and extra == reference[2]
    assert extra["spacegroup_relax"] == 25


def test_single_atom_positions_written_flat_are_one_atom(aflow_dir: Path) -> None:
    entry = json.loads((aflow_dir / "lib1_example.json").read_text())
    entry["positions_fractional"] = "0,0,0"
    structure = parse_aflowlib_entry(entry)[0]
    assert len(structure) == 1 and structure.formula == "Ac1"


def _corrupt(aflow_dir: Path, change) -> dict[str, Any]:
    entry = json.loads((aflow_dir / "icsd_example.json").read_text())
    change(entry)
    return entry


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("geometry"), "no 'geometry' keyword"),
        (lambda e: e.pop("positions_fractional"), "no 'positions_fractional' keyword"),
        (lambda e: e.pop("species"), "no 'species' keyword"),
        (lambda e: e["positions_fractional"].pop(), "natoms is 8 but positions_fractional holds 7"),
        (lambda e: e.update(natoms=9), "natoms is 9 but positions_fractional holds 8"),
        (lambda e: e.update(composition=[3, 5]), "disagrees with compound 'Ac2Br6'"),
        (lambda e: e.update(composition=[2, 5], compound="Ac2Br5"), "composition counts 7 atoms"),
        (lambda e: e.update(species=["Ac", "Xx"]), "'Xx', which is not an element"),
        (lambda e: e.update(geometry=[8.2, 8.2, 4.7, 90, 90]), "six numbers"),
        (lambda e: e.update(geometry=[8.2, 8.2, 4.7, 10, 10, 120]), "do not span a cell"),
        (lambda e: e["positions_fractional"][3].__setitem__(1, "x"), "not a number"),
        (lambda e: e.update(Egap="1.2 eV"), "Egap is not a number: '1.2 eV'"),
        (lambda e: e.update(positions_fractional=5), "positions_fractional is not a list"),
    ],
)
def test_corrupted_entry_is_a_record_error_naming_it(aflow_dir: Path, change, message: str) -> None:
    entry = _corrupt(aflow_dir, change)
    with pytest.raises(RecordError, match=re.escape(message)) as error:
        parse_aflowlib_entry(entry, "icsd_example.json")
    assert "aflow:fc70fda6652015cb (icsd_example.json)" in str(error.value)


def test_unreadable_out_text_names_the_file() -> None:
    with pytest.raises(RecordError, match="broken.out: field 2 .* is not keyword=value"):
        parse_aflowlib_out("auid=aflow:1 | no equals sign | natoms=1", "broken.out")
    with pytest.raises(RecordError, match="x.out: keyword 'natoms' appears twice"):
        parse_aflowlib_out("natoms=1 | natoms=2", "x.out")
    with pytest.raises(RecordError, match="empty"):
        parse_aflowlib_out("  \n", "empty.out")


# --- the AFLUX query ------------------------------------------------------------------------


def _spec(endpoint: str = "https://aflow.org/API/aflux/", **fields: Any) -> AflowSourceSpec:
    return AflowSourceSpec(
        kind="aflow", name="aflow", licence="CC-BY-4.0", endpoint=endpoint, **fields
    )


REQUESTED = (
    "aurl,compound,composition,natoms,geometry,positions_fractional,Egap_type,"
    "enthalpy_formation_atom,spacegroup_relax,aflowlib_version,aflowlib_date"
)


def test_aflux_query_strings() -> None:
    spec = _spec(
        species=["Si", "O"],
        nspecies=2,
        catalog="icsd",
        ranges={"Egap": RangeSpec(min=1, max=3)},
        page_size=50,
    )
    assert aflux_query(spec, 2) == (
        f"auid,species(Si,O),nspecies(2),catalog(ICSD),Egap(1*,*3),{REQUESTED},"
        "paging(2,50),format(json)"
    )
    assert aflux_url(spec, 2) == "https://aflow.org/API/aflux/?" + aflux_query(spec, 2)

    one_sided = _spec(
        ranges={"enthalpy_formation_atom": RangeSpec(max=-0.125), "Egap": RangeSpec(min=0.5)}
    )
    assert aflux_query(one_sided, 1) == (
        "auid,enthalpy_formation_atom(*-0.125),Egap(0.5*),aurl,compound,species,composition,"
        "natoms,geometry,positions_fractional,Egap_type,spacegroup_relax,catalog,"
        "aflowlib_version,aflowlib_date,paging(1,100),format(json)"
    )
    # A limit below the page size asks for no more entries than will be read.
    assert aflux_query(_spec(limit=3), 1).endswith(",paging(1,3),format(json)")


def test_aflux_query_refuses_what_would_change_its_meaning() -> None:
    with pytest.raises(SourceError, match="species 'Qq' is not an element"):
        aflux_query(_spec(species=["Qq"]), 1)
    with pytest.raises(
        SourceError, match=re.escape("range keyword 'Egap),nspecies' is not a name")
    ):
        aflux_query(_spec(ranges={"Egap),nspecies": RangeSpec(min=1)}), 1)
    with pytest.raises(SourceError, match="catalog 'lib1:icsd' is not a name"):
        aflux_query(_spec(catalog="lib1:icsd"), 1)
    with pytest.raises(SourceError, match="nspecies is filtered twice"):
        aflux_query(_spec(nspecies=2, ranges={"nspecies": RangeSpec(min=2)}), 1)


# --- reading AFLUX through the loopback server -----------------------------------------------


@pytest.fixture(scope="module")
def entries(aflow_dir: Path) -> list[dict[str, Any]]:
    loaded = load_example_entries(aflow_dir)
    assert sorted(entry["auid"] for entry in loaded) == sorted(AUIDS.values())
    return loaded


def _ids(items: list) -> list[str]:
    return [item.source_id for item in items]


def test_species_query_returns_exactly_the_entries_with_those_species(entries) -> None:
    with AfluxServer(entries) as server:
        oxides = read_source(_spec(server.url, species=["O"]))
        strontium_oxides = read_source(_spec(server.url, species=["O", "Sr"]))

    assert _ids(oxides.records) == sorted([AUIDS["lib3"], AUIDS["lib5.out"], AUIDS["lib7.json"]])
    assert {e["auid"] for e in entries if "O" in e["species"]} == set(_ids(oxides.records))
    assert oxides.failures == []
    by_id = {r.source_id: r for r in oxides.records}
    assert by_id[AUIDS["lib3"]].formula == "CrRuO3"
    assert by_id[AUIDS["lib3"]].properties == {"band_gap": 0.0, "formation_energy_per_atom": None}
    assert by_id[AUIDS["lib7.json"]].properties["formation_energy_per_atom"] == -2.96113
    assert by_id[AUIDS["lib7.json"]].extra["catalog"] == "LIB7"
    assert len(by_id[AUIDS["lib5.out"]].structure["sites"]) == 12
    assert _ids(strontium_oxides.records) == [AUIDS["lib7.json"]]
    assert server.summonses[0].startswith("auid,species(O),aurl,")
    assert server.summonses[1].startswith("auid,species(O,Sr),aurl,")


def test_paging_by_two_reads_every_entry_once(entries) -> None:
    with AfluxServer(entries) as server:
        result = read_source(_spec(server.url, page_size=2))

    assert sorted(_ids(result.records)) == sorted(AUIDS.values())
    assert len(result.records) == 11 and result.failures == []
    assert [r.row for r in result.records] == list(range(1, 12))
    assert [re.search(r"paging\((\d+),(\d+)\)", s).groups() for s in server.summonses] == [
        (str(page), "2") for page in range(1, 7)
    ]
    assert result.snapshot.n_rows == 11 and result.snapshot.query["pages"] == 6
    assert result.snapshot.database_version == "3.1.221, 3.2.2d, 3.2.2l, 3.2.6, 3.2.7, 3.2.8"


def test_the_total_in_the_keys_ends_the_read_without_an_empty_page(entries) -> None:
    with AfluxServer(entries) as server:
        result = read_source(_spec(server.url, species=["O"], page_size=3))
    assert len(result.records) == 3
    assert len(server.requests) == 1  # "3 of 3" was the last entry


def test_catalog_nspecies_and_limit(entries) -> None:
    with AfluxServer(entries) as server:
        lib1 = read_source(_spec(server.url, catalog="lib1"))
        binaries = read_source(_spec(server.url, nspecies=2))
        limited = read_source(_spec(server.url, limit=3, page_size=2))
    assert sorted(r.formula for r in lib1.records) == ["Ac", "Ba"]
    assert sorted(_ids(binaries.records)) == sorted(
        [AUIDS["icsd.json"], AUIDS["lib2.json"], AUIDS["lib2.out"]]
    )
    assert len(limited.records) == 3 and limited.snapshot.n_rows == 3
    assert [s[-len("paging(1,2),format(json)") :] for s in server.summonses[-2:]] == [
        "paging(1,2),format(json)",
        "paging(2,2),format(json)",
    ]


def test_range_filters_on_egap_and_formation_enthalpy(entries) -> None:
    with AfluxServer(entries) as server:
        gap_1_to_3 = read_source(_spec(server.url, ranges={"Egap": RangeSpec(min=1, max=3)}))
        gap_above_1 = read_source(_spec(server.url, ranges={"Egap": RangeSpec(min=1)}))
        stable = read_source(
            _spec(server.url, ranges={"enthalpy_formation_atom": RangeSpec(max=-0.5)})
        )
    assert _ids(gap_1_to_3.records) == [AUIDS["icsd.out"]]
    assert gap_1_to_3.records[0].properties["band_gap"] == 1.8648
    assert sorted(r.properties["band_gap"] for r in gap_above_1.records) == [1.8648, 4.1084]
    expected = {
        e["auid"]
        for e in entries
        if e.get("enthalpy_formation_atom") is not None and e["enthalpy_formation_atom"] <= -0.5
    }
    assert (
        set(_ids(stable.records))
        == expected
        == {
            AUIDS["icsd.json"],
            AUIDS["lib6.json"],
            AUIDS["lib7.json"],
        }
    )


def test_server_error_then_success_is_retried(entries) -> None:
    with AfluxServer(entries) as server:
        server.fail_next(500)
        result = read_source(_spec(server.url, species=["O"]))
    assert len(result.records) == 3
    assert [r.status for r in server.requests] == [500, 200]
    assert server.requests[0].summons == server.requests[1].summons


def test_rate_limit_waits_for_retry_after(entries) -> None:
    with AfluxServer(entries) as server:
        server.fail_next(429, retry_after="1")
        start = time.monotonic()
        result = read_source(_spec(server.url, species=["Sr"]))
        elapsed = time.monotonic() - start
    assert _ids(result.records) == [AUIDS["lib7.json"]]
    assert [r.status for r in server.requests] == [429, 200]
    assert elapsed >= 1.0


def test_permanent_error_is_a_source_error_naming_the_url(entries) -> None:
    with AfluxServer(entries) as server:
        server.fail_next(403)
        with pytest.raises(
            SourceError, match=r"source aflow: http://127\.0\.0\.1:\d+/API/aflux/\?auid.*HTTP 403"
        ):
            read_source(_spec(server.url))


def test_snapshot_records_the_query_and_is_stable(entries) -> None:
    spec_fields = {"species": ["Ag"], "page_size": 1}
    with AfluxServer(entries) as server:
        first = read_source(_spec(server.url, **spec_fields))
        second = read_source(_spec(server.url, **spec_fields))
    assert first.snapshot.sha256 == second.snapshot.sha256
    assert first.snapshot.n_rows == 2 and first.snapshot.kind == "aflow"
    assert first.snapshot.location == server.url
    spec = _spec(server.url, **spec_fields)
    assert first.snapshot.query == {
        "matchbook": aflux_query(spec, 1).removesuffix(",paging(1,1),format(json)"),
        "summons": aflux_query(spec, 1),
        "page_size": 1,
        "limit": None,
        "pages": 2,
    }
    assert first.snapshot.database_version == "3.1.221, 3.2.2l"


# --- incremental re-runs ----------------------------------------------------------------------


def _full_entry_summonses(server: AfluxServer) -> list[str]:
    """The summonses that asked for full entries (with geometry), not the listing."""
    return [summons for summons in server.summonses if "geometry" in summons]


def test_rerun_fetches_only_new_and_changed_entries_and_drops_removed_ones(
    entries, tmp_path: Path
) -> None:
    spec = _spec("http://placeholder", page_size=4)
    state = tmp_path / "state"
    with AfluxServer(copy.deepcopy(entries)) as server:
        spec = spec.model_copy(update={"endpoint": server.url})
        first = read_source(spec, state)
        first_summonses = list(server.summonses)

        server.requests.clear()
        second = read_source(spec, state)
        second_summonses = list(server.summonses)

        # AFLOW recomputes one entry (new date, new gap) and withdraws another.
        by_auid = {entry["auid"]: entry for entry in server.entries}
        by_auid[AUIDS["lib3"]]["aflowlib_date"] = ["20310101_00:00:00_GMT-5"]
        by_auid[AUIDS["lib3"]]["Egap"] = 0.75
        server.entries.remove(by_auid[AUIDS["lib1.out"]])
        server.requests.clear()
        third = read_source(spec, state)
        third_summonses = list(server.summonses)
        fresh = read_source(spec.model_copy(update={"incremental": False}), state)

    # The first read, with nothing saved, reads the query in full: 11 entries, 3 pages.
    assert first.changes == RefreshCounts(11, new=11, changed=0, unchanged=0, removed=0, fetched=11)
    assert len(first_summonses) == 3
    assert all("geometry" in summons for summons in first_summonses)

    # The second lists auid and aflowlib_date only, and fetches no full entry.
    assert second.changes == RefreshCounts(11, new=0, changed=0, unchanged=11, removed=0, fetched=0)
    assert [summons.split(",paging")[0] for summons in second_summonses] == [
        "auid,aflowlib_date"
    ] * 3
    assert second.records == first.records and second.failures == first.failures == []
    assert second.snapshot.sha256 == first.snapshot.sha256
    assert second.snapshot.query == first.snapshot.query

    # The third fetches the recomputed entry alone, and drops the withdrawn one.
    assert third.changes == RefreshCounts(10, new=0, changed=1, unchanged=9, removed=1, fetched=1)
    [fetch] = [summons for summons in third_summonses if "geometry" in summons]
    assert fetch.startswith(f"auid('{AUIDS['lib3']}'),aurl,compound,")
    records = {record.source_id: record for record in third.records}
    assert AUIDS["lib1.out"] not in records and len(records) == 10
    assert records[AUIDS["lib3"]].properties["band_gap"] == 0.75

    # ... and gives what a full read of the updated database gives, to the snapshot hash.
    assert fresh.changes is None
    assert third.records == fresh.records and third.failures == fresh.failures
    assert third.snapshot.sha256 == fresh.snapshot.sha256 != first.snapshot.sha256
    assert third.snapshot.query == fresh.snapshot.query


def test_incremental_false_or_no_state_folder_reads_everything(entries, tmp_path: Path) -> None:
    with AfluxServer(entries) as server:
        read_source(_spec(server.url), tmp_path)
        server.requests.clear()
        full = read_source(_spec(server.url, incremental=False), tmp_path)
        without_state = read_source(_spec(server.url))
    assert full.changes is None and without_state.changes is None
    assert len(_full_entry_summonses(server)) == 2
    assert full.snapshot.sha256 == without_state.snapshot.sha256


def test_a_limit_lists_and_keeps_only_the_first_entries(entries, tmp_path: Path) -> None:
    with AfluxServer(entries) as server:
        spec = _spec(server.url, limit=5, page_size=2)
        first = read_source(spec, tmp_path)
        second = read_source(spec, tmp_path)
        fresh = read_source(spec)
    assert second.changes == RefreshCounts(5, new=0, changed=0, unchanged=5, removed=0, fetched=0)
    assert _ids(first.records) == _ids(second.records) == _ids(fresh.records)
    assert len(second.records) == 5
    assert second.snapshot.sha256 == fresh.snapshot.sha256


# --- replay of the recorded AFLUX pages -------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_pages(aflow_dir: Path) -> list[dict[str, Any]]:
    return [json.loads((aflow_dir / f"aflux_data{n}.json").read_text()) for n in (0, 1)]


def test_recorded_pages_read_as_numbered_entries(recorded_pages) -> None:
    for number, page in enumerate(recorded_pages):
        entries, total = read_aflux_page(page, f"aflux_data{number}.json")
        assert total == 912
        assert [index for index, _ in entries] == list(range(20 * number + 1, 20 * number + 21))
        assert [entry["Egap"] for _, entry in entries] == [
            page[f"{index} of 912"]["Egap"] for index, _ in entries
        ]
    first = read_aflux_page(recorded_pages[0], "aflux_data0.json")[0][0][1]
    assert first["auid"] == "aflow:db1f17a6f945c29b" and first["Egap"] == "6.8531"
    with pytest.raises(SourceError, match="x: AFLUX answer key 'error' is not 'i of N'"):
        read_aflux_page({"error": "bad"}, "x")


def test_replayed_pages_become_failures_without_structure(recorded_pages) -> None:
    with AfluxServer(replay_pages=recorded_pages) as server:
        result = read_source(_spec(server.url, page_size=20, limit=40))

    recorded = [entry for page in recorded_pages for entry in page.values()]
    assert result.records == []
    assert len(result.failures) == 40
    assert _ids(result.failures) == [entry["auid"] for entry in recorded]
    assert [f.row for f in result.failures] == list(range(1, 41))
    first = result.failures[0]
    assert first.stage == "ingest"
    assert first.message.startswith(
        "AFLUX entry 1: aflow:db1f17a6f945c29b: no 'geometry' keyword, so no structure can be built"
    )
    assert "Egap, agl_thermal_conductivity_300K, auid, aurl, compound" in first.message
    assert [re.search(r"paging\(\d+,\d+\)", s).group() for s in server.summonses] == [
        "paging(1,20)",
        "paging(2,20)",
    ]
    # The snapshot hashes exactly the recorded entries, Egap values and all, in page order.
    expected = SnapshotBuilder(_spec(server.url), "")
    for entry in recorded:
        expected.add_document(entry)
    assert result.snapshot.sha256 == expected.finish().sha256
    assert result.snapshot.n_rows == 40 and result.snapshot.database_version == ""


def test_replay_that_ends_before_the_announced_total_fails(recorded_pages) -> None:
    items: list[StructureRecord | RecordFailure] = []
    with AfluxServer(replay_pages=recorded_pages) as server:
        read = open_source(_spec(server.url, page_size=20))
        with pytest.raises(
            SourceError, match="AFLUX announced 912 entries but page 3 ends the result after 40"
        ):
            for item in read:
                items.append(item)
    assert len(items) == 40 and all(isinstance(item, RecordFailure) for item in items)
    assert len(server.summonses) == 3


def test_replay_at_another_page_size_is_refused(recorded_pages) -> None:
    with AfluxServer(replay_pages=recorded_pages) as server:
        with pytest.raises(
            SourceError, match="HTTP 400: the recorded pages hold 20 entries, not 10"
        ):
            read_source(_spec(server.url, page_size=10))


def test_server_that_ignores_paging_is_caught(entries) -> None:
    class RepeatingServer(AfluxServer):
        """Answers every page with the first one."""

        def _answer(self, path: str, summons_text: str):
            return super()._answer(path, re.sub(r"paging\((\d+),", "paging(1,", summons_text))

    with RepeatingServer(entries) as server:
        with pytest.raises(SourceError, match="page 2 starts at entry 1, not 3"):
            read_source(_spec(server.url, page_size=2))
