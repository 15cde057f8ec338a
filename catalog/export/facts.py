"""What the crate and the dataset description say about a run: its spec, sources, models,
ranking and report, and the licences and citations of its sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from matscreen.catalog.export.subgraph import AgentNode, RunSubgraph
from matscreen.catalog.nodes import Entity
from matscreen.tasks.hashing import sha256_text


@dataclass(frozen=True)
class RunFacts:
    """The parts of a run's subgraph the crate and the dataset description are made of."""

    graph: RunSubgraph
    spec: dict[str, Any]
    snapshots: list[Entity]
    models: list[Entity]
    ranking: Entity | None
    report: Entity | None
    person: AgentNode | None
    units: dict[str, str]

    @property
    def campaign(self) -> str:
        return str(self.spec.get("name") or self.graph.run.name)


def run_facts(graph: RunSubgraph) -> RunFacts:
    """Pick the run's spec, sources, models, ranking, report and person out of its subgraph."""
    report = next(iter(graph.of_kind("report", direct_only=True)), None)
    reported = set(graph.objects("wasDerivedFrom", report.id)) if report else set()
    # The report names the ranking and models it was made from; without a report (a run
    # that failed before writing it) the run's own rankings and models stand in.
    rankings = graph.of_kind("ranking", direct_only=True)
    ranking = next((r for r in rankings if r.id in reported), next(iter(rankings), None))
    models = graph.of_kind("model", direct_only=True)
    models = [m for m in models if m.id in reported] or models
    specs = graph.of_kind("campaign_spec", direct_only=True)
    spec = specs[0].attributes.get("spec", {}) if specs else {}
    agents = [graph.agents[a] for a in graph.objects("wasAssociatedWith", graph.run.id)]
    person = next((a for a in agents if a.kind == "person"), None)
    units = dict(graph.units)
    for criterion in spec.get("criteria", []):
        units.setdefault(criterion["property"], criterion.get("unit", ""))
    return RunFacts(
        graph=graph,
        spec=spec,
        snapshots=graph.of_kind("source_snapshot", direct_only=True),
        models=models,
        ranking=ranking,
        report=report,
        person=person,
        units=units,
    )


# -- licences -------------------------------------------------------------------------------
#: SPDX identifiers recognised in a source's licence text, with the licence's own page.
SPDX_LICENCES = {
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "CC-BY-NC-4.0": "https://creativecommons.org/licenses/by-nc/4.0/",
    "CC-BY-3.0": "https://creativecommons.org/licenses/by/3.0/",
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "ODbL-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "ODC-By-1.0": "https://opendatacommons.org/licenses/by/1-0/",
    "PDDL-1.0": "https://opendatacommons.org/licenses/pddl/1-0/",
    "MIT": "https://opensource.org/license/mit",
    "Apache-2.0": "https://www.apache.org/licenses/LICENSE-2.0",
    "BSD-3-Clause": "https://opensource.org/license/bsd-3-clause",
}


@dataclass(frozen=True)
class Licence:
    """A licence as a linked-data node: an SPDX address when recognised, else a local id."""

    id: str
    name: str
    url: str | None
    description: str

    def jsonld(self) -> dict[str, Any]:
        """The licence as a schema.org ``CreativeWork``."""
        node = {"@type": "CreativeWork", "name": self.name, "description": self.description}
        if self.url:
            node = {"@id": self.id, **node, "identifier": self.name, "url": self.url}
        return node


def licence_of(licence: str) -> Licence:
    """Recognise the SPDX licence named in a source's licence text.

    ``"MIT (CDVAE split of the CMR data)"`` is the MIT licence and ``"CC BY 4.0"`` is
    CC-BY-4.0; the text itself is kept as the description. Unrecognised text becomes a
    local licence node named by the text.
    """
    for spdx in sorted(SPDX_LICENCES, key=len, reverse=True):
        pattern = re.escape(spdx).replace(r"\-", r"[-\s]")
        if re.search(rf"(?<![\w.-]){pattern}(?![\w-]|\.\d)", licence, re.IGNORECASE):
            return Licence(f"https://spdx.org/licenses/{spdx}", spdx, SPDX_LICENCES[spdx], licence)
    return Licence(f"#licence-{sha256_text(licence)[:12]}", licence, None, licence)


def source_licences(snapshots: Iterable[Entity]) -> dict[str, Licence]:
    """The distinct licences of the sources, their texts joined when two name one licence."""
    found: dict[str, Licence] = {}
    for snapshot in snapshots:
        licence = licence_of(str(snapshot.attributes.get("licence", "")))
        known = found.get(licence.id)
        if known is None:
            found[licence.id] = licence
        elif licence.description not in known.description.split("; "):
            found[licence.id] = Licence(
                known.id, known.name, known.url, f"{known.description}; {licence.description}"
            )
    return found


def citations(snapshots: Iterable[Entity]) -> list[str]:
    """The distinct citations of the sources, in the order they are first met."""
    seen: dict[str, None] = {}
    for snapshot in snapshots:
        seen.update(dict.fromkeys(snapshot.attributes.get("citation", [])))
    return list(seen)
