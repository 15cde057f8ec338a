"""Data, features and printed tables of the accuracy benchmark (``benchmarks/accuracy.py``).

Records are read with matscreen's own sources: the CMR perovskites through the demo
campaign's ``csv_cif`` source, their decorated counterparts through a ``prototypes``
source, the Materials Project and Alexandria files through ``files`` sources (JSON lines).
The OQMD file holds no pymatgen structure (a cell and ``"El @ x y z"`` sites), which no
matscreen source reads; it is turned into structures here with pymatgen, nothing else.

Features come from :func:`matscreen.tasks.featurize.featurize_batch` in a pool of worker
processes, timed per feature set, and are kept in memory for the run.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matscreen.flows.settings import REPOSITORY_ROOT, Settings
from matscreen.tasks.featurize import featurize_batch
from matscreen.tasks.featurize.presets import featurization_config, preset_config
from matscreen.tasks.featurize.site_roles import SiteRoleProperty
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import (
    FeaturizationSpec,
    FilesSourceSpec,
    PropertySpec,
    PrototypeSourceSpec,
    load_spec,
)

DEMO_SPEC = REPOSITORY_ROOT / "deploy" / "campaigns" / "perovskite-water-splitting.yaml"

#: The anion groups of the CMR set, as written on the perovskite's X label.
ANION_GROUPS = ["O3", "N3", "O2N", "ON2", "O2S", "O2F", "ONF"]

_M = "matminer.featurizers."
_COMPOSITION = [
    {"input": "composition", "cls": _M + "composition.ElementProperty", "from_preset": "magpie"},
    {"input": "composition", "cls": _M + "composition.Stoichiometry"},
    {"input": "composition", "cls": _M + "composition.ValenceOrbital"},
    {"input": "composition", "cls": _M + "composition.IonProperty", "kwargs": {"fast": True}},
]
_ROLES = {"input": "structure", "cls": "matscreen.tasks.featurize.site_roles.SiteRoleProperty"}

#: The 22 Magpie properties the previous demo resolved by coordination.
_DEMO_PROPERTIES = ["Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row",
                    "CovalentRadius", "Electronegativity", "NsValence", "NpValence",
                    "NdValence", "NfValence", "NValence", "NsUnfilled", "NpUnfilled",
                    "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa", "GSbandgap",
                    "GSmagmom", "SpaceGroupNumber"]  # fmt: skip


def _custom(featurizers: list[dict[str, Any]], preset: str | None = None) -> dict[str, Any]:
    spec = FeaturizationSpec.model_validate({"preset": preset, "featurizers": featurizers})
    return featurization_config(spec)


def feature_sets() -> dict[str, dict[str, Any]]:
    """Every featurization the benchmark uses: name -> featurization description.

    ``demo-2025`` is the previous demo campaign's (the ``fast`` preset plus the 22 Magpie
    properties resolved by coordination); ``magpie`` is matminer's Magpie statistics
    alone (the baseline's); ``composition`` and ``roles`` are the two halves of ``sites``.
    """
    site_resolved = {
        "input": "structure",
        "cls": "matscreen.tasks.featurize.site_resolved.CoordinationElementProperty",
        "kwargs": {"properties": _DEMO_PROPERTIES},
    }
    return {
        "fast": preset_config("fast"),
        "demo-2025": _custom([site_resolved], preset="fast"),
        "sites": preset_config("sites"),
        "relaxed": preset_config("relaxed"),
        "magpie": _custom(_COMPOSITION[:1]),
        "composition": _custom(_COMPOSITION),
        "roles": _custom([_ROLES]),
    }


@dataclass
class Dataset:
    """Labelled structures: ids, structure dicts and one label array per target."""

    name: str
    ids: list[str]
    structures: list[dict[str, Any]]
    targets: dict[str, np.ndarray]
    #: For each row, the structure dict of its decorated counterpart (None if it has none).
    counterparts: list[dict[str, Any] | None] = field(default_factory=list)


def load_cmr(settings: Settings) -> Dataset:
    """The CMR perovskites as the demo campaign reads them (its ``csv_cif`` source)."""
    spec = load_spec(DEMO_SPEC, settings.data_dir)
    source = next(s for s in spec.sources if s.kind == "csv_cif")
    records = read_source(source).records
    targets = {
        t: np.array([r.properties[t] for r in records], dtype=np.float64)
        for t in ("heat_of_formation", "band_gap")
    }
    return Dataset("cmr", [r.id for r in records], [r.structure for r in records], targets)


def role_key(
    structure: dict[str, Any], roles: SiteRoleProperty
) -> tuple[str, str, tuple[str, ...]] | None:
    """(large-cation element, small-cation element, sorted anion site elements), by
    :meth:`SiteRoleProperty.roles`; None when a role holds more than one element."""
    from pymatgen.core import Structure

    crystal = Structure.from_dict(structure)
    large, small, anion, _ = roles.roles(crystal)
    symbols = np.array([site.specie.symbol for site in crystal])
    a, b = set(symbols[large]), set(symbols[small])
    if len(a) != 1 or len(b) != 1 or (large & small).any():
        return None
    return a.pop(), b.pop(), tuple(sorted(symbols[anion]))


def add_counterparts(data: Dataset) -> int:
    """Attach to every CMR record its ideal decorated cell; return how many have one.

    The decorations come from matscreen's ``prototypes`` source (``perovskite_ABX3``,
    every metal of the set on A and B, A equal to B allowed, no charge-neutrality filter,
    lattices from radii) and are matched by (A, B, anion elements).
    """
    roles = SiteRoleProperty()
    keys = [role_key(s, roles) for s in data.structures]
    metals = sorted({e for k in keys if k for e in k[:2]})
    spec = PrototypeSourceSpec(
        kind="prototypes",
        name="abx3_decorations",
        prototype="perovskite_ABX3",
        sites={"A": metals, "B": metals, "X": ANION_GROUPS},
        charge_neutral=False,
        distinct_elements=False,
    )
    from pymatgen.core import Composition

    by_key = {}
    for record in read_source(spec).records:
        sites = record.extra["sites"]
        anions = Composition(sites["X"])
        expanded = tuple(sorted(str(e) for e, n in anions.items() for _ in range(int(n))))
        by_key[(sites["A"], sites["B"], expanded)] = record.structure
    data.counterparts = [by_key.get(k) if k else None for k in keys]
    return sum(c is not None for c in data.counterparts)


def _files(name: str, path: Path, id_key: str | None, columns: dict[str, str]) -> Any:
    properties = {
        target: PropertySpec(column=column, unit="eV/atom" if "formation" in target else "eV")
        for target, column in columns.items()
    }
    spec = FilesSourceSpec(
        kind="files",
        name=name,
        path=path,
        format="jsonl",
        id_key=id_key,
        properties=properties,
        licence="CC-BY-4.0",
        citation=[name],
    )
    return read_source(spec).records


def _oqmd(path: Path) -> Dataset:
    from pymatgen.core import Lattice, Structure

    ids, structures, energy, gap = [], [], [], []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        species, coords = [], []
        for site in row["sites"]:
            symbol, _, position = site.partition("@")
            species.append(symbol.strip())
            coords.append([float(v) for v in position.split()])
        crystal = Structure(Lattice(row["cell"]), species, coords)
        ids.append(f"oqmd:{row['entry_id']}")
        structures.append(crystal.as_dict())
        energy.append(row["delta_e"])
        gap.append(row["band_gap"])
    targets = {
        "formation_energy_per_atom": np.array(energy, dtype=np.float64),
        "band_gap": np.array(gap, dtype=np.float64),
    }
    return Dataset("OQMD oqmd_200", ids, structures, targets)


def load_small_sets(settings: Settings) -> list[Dataset]:
    """The Materials Project, Alexandria and OQMD files of the shared data folder."""
    columns = {"formation_energy_per_atom": "formation_energy_per_atom", "band_gap": "band_gap"}
    alexandria_columns = {
        "formation_energy_per_atom": "targets.regression.e_form",
        "band_gap": "targets.regression.band_gap_ind",
    }
    data = settings.data_dir
    found = []
    for name, path, id_key, mapped in [
        ("mp", data / "materials_project" / "summary_200.jsonl", None, columns),
        ("alexandria", data / "optimade" / "alexandria_98.jsonl", "entry_id", alexandria_columns),
    ]:
        records = [r for r in _files(name, path, id_key, mapped) if r.structure]
        targets = {
            t: np.array([r.properties.get(t) for r in records], dtype=np.float64) for t in mapped
        }
        label = {"mp": "MP summary_200", "alexandria": "Alexandria alexandria_98"}[name]
        found.append(
            Dataset(label, [r.id for r in records], [r.structure for r in records], targets)
        )
    found.append(_oqmd(data / "optimade" / "oqmd_200.jsonl"))
    return found


# -- featurization ------------------------------------------------------------------------------


def _featurize_chunk(items: list[tuple[str, dict[str, Any]]], config: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return featurize_batch(items, config)


def _warm_up(_: int) -> None:
    import matminer.featurizers.composition  # noqa: F401
    import matminer.featurizers.structure  # noqa: F401


@dataclass
class Features:
    """One feature matrix: rows in the dataset's order (NaN rows where featurizing failed)."""

    labels: list[str]
    values: np.ndarray
    failures: dict[str, str]
    seconds_per_structure: float


class Featurizer:
    """Feature matrices computed by a pool of worker processes, kept for the run."""

    def __init__(self, workers: int = 2, chunk: int = 250) -> None:
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        list(self.pool.map(_warm_up, range(workers)))  # start the workers up front
        self.chunk = chunk
        self.configs = feature_sets()
        self.cache: dict[tuple[str, str], Features] = {}

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.shutdown()

    def compute(self, set_name: str, keys: list[str], structures: list[dict[str, Any]]) -> Features:
        """Featurize ``structures`` with feature set ``set_name``, uncached, timed."""
        config = self.configs[set_name]
        items = list(zip(keys, structures, strict=True))
        chunks = [items[i : i + self.chunk] for i in range(0, len(items), self.chunk)]
        started = time.perf_counter()
        batches = list(self.pool.map(_featurize_chunk, chunks, [config] * len(chunks)))
        seconds = time.perf_counter() - started
        labels = batches[0].labels
        rows = {key: row for b in batches for key, row in zip(b.ids, b.values, strict=True)}
        nan_row = np.full(len(labels), np.nan)
        values = np.array([rows.get(key, nan_row) for key in keys]).reshape(len(keys), -1)
        failures = {k: v for b in batches for k, v in b.failures.items()}
        return Features(labels, values, failures, seconds / max(len(items), 1))

    def features(self, data: Dataset, set_name: str, decorated: bool = False) -> Features:
        """The dataset's features (or its counterparts', with ``decorated``), cached."""
        key = (f"{data.name}{' decorated' if decorated else ''}", set_name)
        if key not in self.cache:
            if decorated:
                rows = [i for i, c in enumerate(data.counterparts) if c is not None]
                found = self.compute(
                    set_name, [data.ids[i] for i in rows], [data.counterparts[i] for i in rows]
                )
                values = np.full((len(data.ids), len(found.labels)), np.nan)
                values[rows] = found.values
                found.values = values
            else:
                found = self.compute(set_name, data.ids, data.structures)
            self.cache[key] = found
        return self.cache[key]


# -- printing -----------------------------------------------------------------------------------


def table(title: str, columns: list[str]) -> None:
    """Print a markdown table's title and header."""
    print(f"\n### {title}\n\n| {' | '.join(columns)} |\n|{'---|' * len(columns)}", flush=True)


def row(cells: list[str]) -> None:
    """Print one markdown table row at once."""
    print(f"| {' | '.join(cells)} |", flush=True)


def featurization_table(data: Dataset, features: Featurizer) -> list[dict[str, Any]]:
    """Featurize the perovskites and their counterparts with every set; print the costs."""
    table("Featurization of the CMR perovskites (2 processes)",
          ["feature set", "columns", "ms/structure relaxed", "ms/structure decorated",
           "failures", "NaN cells relaxed", "NaN cells decorated"])  # fmt: skip
    has = np.array([c is not None for c in data.counterparts])
    found = []
    for set_name in features.configs:
        relaxed = features.features(data, set_name)
        decorated = features.features(data, set_name, decorated=True)
        entry = {
            "features": set_name,
            "columns": len(relaxed.labels),
            "ms_per_structure": 1000 * relaxed.seconds_per_structure,
            "ms_per_structure_decorated": 1000 * decorated.seconds_per_structure,
            "failures": len(relaxed.failures) + len(decorated.failures),
            "nan_share": float(np.isnan(relaxed.values).mean()),
            "nan_share_decorated": float(np.isnan(decorated.values[has]).mean()),
        }
        found.append(entry)
        row([set_name, str(entry["columns"]), f"{entry['ms_per_structure']:.2f}",
             f"{entry['ms_per_structure_decorated']:.2f}", str(entry["failures"]),
             f"{entry['nan_share']:.2%}", f"{entry['nan_share_decorated']:.2%}"])  # fmt: skip
    return found
