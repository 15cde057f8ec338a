"""Installed versions of the packages results depend on."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: Distributions that install a package under another name: the CPU build of xgboost.
_ALSO_DISTRIBUTED_AS = {"xgboost": ("xgboost-cpu",)}


def installed_version(package: str) -> str:
    """The installed version of a package — or of the distribution that installs it under
    another name (``xgboost-cpu`` for ``xgboost``) — or ``"missing"``."""
    for name in (package, *_ALSO_DISTRIBUTED_AS.get(package, ())):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "missing"
