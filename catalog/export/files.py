"""The files of a run's crate: its output folder checked against what the catalog recorded,
or its tables regenerated from the artifact store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.export.facts import RunFacts
from matscreen.catalog.export.prov import entity_urn
from matscreen.tasks.errors import ArtifactError, CatalogError
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import file_sha256, sha256_text
from matscreen.tasks.report.outputs import shortlist_frame
from matscreen.tasks.tables import parquet_to_frame

#: The files a campaign run writes into its output folder, with their media types.
OUTPUT_FILES = {
    "shortlist.csv": "text/csv",
    "ranking.csv": "text/csv",
    "metrics.json": "application/json",
    "report.html": "text/html",
}
#: Sub-folders of the output folder whose files belong to the run (DFT hand-off structures).
OUTPUT_FOLDERS = ("structures",)
#: Media types of the files in those sub-folders, by suffix; others are ``text/plain``.
SUFFIX_MEDIA_TYPES = {
    ".cif": "chemical/x-cif",
    ".jsonl": "application/jsonl",
    ".json": "application/json",
    ".csv": "text/csv",
    ".png": "image/png",
    ".html": "text/html",
}


@dataclass(frozen=True)
class CrateFile:
    """A file of a crate and what to say about it."""

    name: str
    media_type: str
    description: str
    identifier: str | None = None
    about: str | None = None


def _check_secrets(data: bytes, where: Path | str, secrets: Iterable[str]) -> None:
    for secret in secrets:
        if secret.encode("utf-8") in data:
            raise CatalogError(
                f"{where} holds the value of a secret environment variable; not exporting it"
            )


def _verify_recorded(path: Path, recorded: dict[str, Any] | None, run_id: str) -> None:
    if recorded is None:
        return
    actual = file_sha256(path)
    if actual != recorded["sha256"]:
        raise ArtifactError(
            f"{path} has sha256 {actual}, but run {run_id} wrote {path.name} with sha256 "
            f"{recorded['sha256']}: the file changed after the run"
        )


def _written_by(facts: RunFacts, name: str) -> str:
    run_id = facts.graph.run.id
    if facts.report is None:
        return f"{name} written by run {run_id}"
    return f"{name} written by run {run_id}, recorded in {entity_urn(facts.report.id)}"


def _media_type(name: str) -> str:
    return OUTPUT_FILES.get(name) or SUFFIX_MEDIA_TYPES.get(Path(name).suffix, "text/plain")


def _recorded_in_folders(recorded: Mapping[str, Any]) -> list[str]:
    """Recorded names of files in sub-folders; names that could leave the folder are not."""
    return sorted(
        name
        for name in recorded
        if "/" in name
        and not name.startswith("/")
        and all(part not in ("", ".", "..") for part in name.split("/"))
    )


def _subfolder_names(folder: Path, recorded: Mapping[str, Any]) -> list[str]:
    """Names (``structures/001_x.cif``) of the run's files in sub-folders of ``folder``.

    The sub-folders are :data:`OUTPUT_FOLDERS` and those of files the run recorded. Where
    the run recorded files of a sub-folder, exactly those are the run's (found or not);
    otherwise every regular file in it is. Hidden names (temporary files) and symbolic
    links are never taken.
    """
    in_folders = _recorded_in_folders(recorded)
    tops = dict.fromkeys([*OUTPUT_FOLDERS, *(n.split("/", 1)[0] for n in in_folders)])
    names = set(in_folders)
    for top in tops:
        if any(n.startswith(f"{top}/") for n in in_folders):
            continue
        base = folder / top
        if not base.is_dir() or base.is_symlink():
            continue
        for path in base.rglob("*"):
            parts = path.relative_to(folder).parts
            if path.is_file() and not path.is_symlink() and not any(p[0] == "." for p in parts):
                names.add("/".join(parts))
    return sorted(names)


def folder_outputs(facts: RunFacts, folder: Path, secrets: list[str]) -> list[CrateFile]:
    """The run's output files found in ``folder``, checked against what the run recorded.

    These are :data:`OUTPUT_FILES` and the files in sub-folders (:func:`_subfolder_names`),
    named by their path relative to ``folder``.

    Raises
    ------
    ArtifactError
        If a file the run recorded is missing from ``folder`` or has other content.
    CatalogError
        If a file holds the value of a secret environment variable.
    """
    run_id = facts.graph.run.id
    recorded = facts.report.attributes.get("files", {}) if facts.report else {}
    files = []
    for name in [*OUTPUT_FILES, *_subfolder_names(folder, recorded)]:
        path = folder / name
        if not path.is_file():
            if name in recorded:
                raise ArtifactError(f"{path} is missing, but run {run_id} wrote {name}")
            continue
        _verify_recorded(path, recorded.get(name), run_id)
        _check_secrets(path.read_bytes(), path, secrets)
        files.append(CrateFile(name, _media_type(name), _written_by(facts, name)))
    return files


def _regenerated_tables(facts: RunFacts, artifacts: ArtifactStore) -> dict[str, str]:
    """``ranking.csv`` and ``shortlist.csv`` rebuilt from the ranking artifact."""
    if facts.ranking is None:
        return {}
    stored = artifacts.get_bytes(facts.ranking.attributes["artifact_sha256"])
    ranking = parquet_to_frame(stored).reset_index()
    # The same CSV dialect as the run's own output files (tasks/report/outputs.py).
    tables = {"ranking.csv": ranking.to_csv(index=False, float_format="%.6g")}
    if "shortlist_size" in facts.spec:
        shortlist = shortlist_frame(ranking, int(facts.spec["shortlist_size"]))
        tables["shortlist.csv"] = shortlist.to_csv(index=False, float_format="%.6g")
    return tables


def gather_outputs(
    facts: RunFacts,
    artifacts: ArtifactStore,
    out_dir: Path,
    outputs_dir: Path | None,
    secrets: list[str],
) -> tuple[list[CrateFile], list[str]]:
    """Put the run's output files into ``out_dir``; return them and the names left out."""
    if outputs_dir is not None:
        files = folder_outputs(facts, Path(outputs_dir), secrets)
        for item in files:
            source, target = Path(outputs_dir) / item.name, out_dir / item.name
            if not (target.exists() and target.samefile(source)):
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(target, source.read_bytes())
        return files, []

    run_id = facts.graph.run.id
    recorded = facts.report.attributes.get("files", {}) if facts.report else {}
    tables = _regenerated_tables(facts, artifacts)
    files, omitted = [], []
    for name in [*OUTPUT_FILES, *_recorded_in_folders(recorded)]:
        media_type = _media_type(name)
        entry = recorded.get(name)
        if name in tables and facts.ranking is not None:
            data = tables[name].encode("utf-8")
            _check_secrets(data, name, secrets)
            write_atomically(out_dir / name, data)
            note = f"{name} regenerated from {entity_urn(facts.ranking.id)}"
            if entry and entry["sha256"] != sha256_text(tables[name]):
                note += f"; the file run {run_id} wrote had sha256 {entry['sha256']}"
            files.append(CrateFile(name, media_type, note))
            continue
        # Files that cannot be rebuilt are taken from where the run wrote them, if they
        # are still there unchanged.
        written = Path(entry["path"]) if entry else None
        if entry and written and written.is_file() and file_sha256(written) == entry["sha256"]:
            data = written.read_bytes()
            _check_secrets(data, written, secrets)
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(out_dir / name, data)
            files.append(CrateFile(name, media_type, _written_by(facts, name)))
        else:
            omitted.append(name)
    return files, omitted
