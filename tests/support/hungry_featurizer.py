"""A featurizer that needs a chosen amount of memory per site, to test the memory limit."""

from __future__ import annotations

from matminer.featurizers.base import BaseFeaturizer


class MemoryPerSite(BaseFeaturizer):
    """Allocates (and touches) ``megabytes_per_site`` MiB per site; gives the site count."""

    def __init__(self, megabytes_per_site: int = 1) -> None:
        self.megabytes_per_site = megabytes_per_site

    def featurize(self, structure) -> list[float]:  # type: ignore[no-untyped-def]
        buffer = bytearray(len(structure) * self.megabytes_per_site * 1024 * 1024)
        return [float(len(structure) + 0 * len(buffer))]

    def feature_labels(self) -> list[str]:
        return ["sites"]

    def citations(self) -> list[str]:
        return []

    def implementors(self) -> list[str]:
        return ["matscreen tests"]
