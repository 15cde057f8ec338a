"""The project's exception tree.

Every error matscreen raises on purpose derives from :class:`MatscreenError`, and every
message names the record, file, key or id at fault.
"""

from __future__ import annotations


class MatscreenError(Exception):
    """Root of every error matscreen raises on purpose."""


class SpecError(MatscreenError):
    """A campaign spec is invalid: unknown key, wrong type, missing file."""


class SettingsError(MatscreenError):
    """A ``MATSCREEN_`` environment variable holds a value matscreen cannot use; the message
    names the variable (and never shows a password)."""


class OutputFolderError(MatscreenError):
    """An output folder cannot be created or written; the message names it and why."""


class SourceError(MatscreenError):
    """A structure source cannot be read (file missing, wrong columns, unreadable)."""


class RecordError(MatscreenError):
    """One record of a source cannot be turned into a structure record."""


class FeaturizationError(MatscreenError):
    """Featurization failed in a way that is not confined to one structure."""


class InputError(MatscreenError):
    """A file given to ``matscreen train`` or ``predict`` cannot be used: missing, of an
    unknown format, without the structure or label column, or with too few usable rows."""


class SplitError(MatscreenError):
    """Records cannot be split into training and held-out sets as the spec asks."""


class ModelError(MatscreenError):
    """A model cannot be trained or applied (bad labels, too few rows, mismatched features)."""


class RankingError(MatscreenError):
    """Candidates cannot be ranked as the spec asks (a criterion, method or diversity
    setting that the predictions cannot serve)."""


class ScreenError(MatscreenError):
    """A campaign has nothing to screen: every candidate was known, duplicated or failed."""


class CatalogError(MatscreenError):
    """The provenance catalog refused an operation or does not hold what was asked for."""


class NotFoundError(CatalogError):
    """An entity, activity or candidate id is not in the catalog."""


class ProvenanceRuleError(CatalogError):
    """A relation between two catalog nodes breaks the PROV rules table."""


class ArtifactError(CatalogError):
    """An artifact file is missing or its content does not match its recorded sha256."""
