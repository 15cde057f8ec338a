"""Every package of the repository is installed by a plain (non-editable) install."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {Path(folder): name for name, folder in setuptools["package-dir"].items()}
    found = set()
    for folder, name in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT)
            # The package a folder installs as: under the closest mapped folder.
            base = max(
                (f for f in folders if relative.is_relative_to(f)), key=lambda f: len(f.parts)
            )
            if base != folder:
                continue
            found.add(".".join([name, *relative.relative_to(folder).parts]))
    assert found - listed == set()
    assert "matscreen.catalog.export" in found  # the walk sees sub-packages
