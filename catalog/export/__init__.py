"""FAIR exports of one campaign run: W3C PROV, an RO-Crate and a schema.org description.

Everything in this package is a pure function of the catalog (and, for the crate, the artifact store
and the run's output folder); nothing is read from the environment except to recognise
secrets that must not leave it (see :func:`secret_values`).

Identifiers
-----------
Catalog nodes are named in the ``matscreen:`` namespace, bound to ``urn:matscreen:``:
``urn:matscreen:entity:<sha256>`` (entities are content-addressed, so the name is stable
across catalogs), ``urn:matscreen:activity:<run id>`` (Prefect run ids or UUIDs) and
``urn:matscreen:agent:<sha256>``. Attribute names use the same namespace
(``matscreen:licence``). A URN is used rather than an ``https`` address because no server
answers for these names: they are meant to be globally distinct and stable, and they are
resolved through a catalog, not the web.

Modules
-------
:mod:`.subgraph` reads the part of the catalog a run made and read (secrets masked by
:mod:`.redaction`); :mod:`.prov` writes it as W3C PROV; :mod:`.facts` picks out what the
crate says about the run (sources, models, ranking, licences); :mod:`.files` gathers the
run's output files, :mod:`.descriptions` its model cards and schema.org description, and
:mod:`.crate` assembles the RO-Crate.
"""

from matscreen.catalog.export.crate import CrateFiles, export_rocrate, write_run_crate
from matscreen.catalog.export.facts import Licence, licence_of
from matscreen.catalog.export.prov import ProvFiles, export_prov, to_prov_document
from matscreen.catalog.export.redaction import redact, secret_values
from matscreen.catalog.export.subgraph import RunSubgraph, run_subgraph

__all__ = [
    "CrateFiles",
    "Licence",
    "ProvFiles",
    "RunSubgraph",
    "export_prov",
    "export_rocrate",
    "licence_of",
    "redact",
    "run_subgraph",
    "secret_values",
    "to_prov_document",
    "write_run_crate",
]
