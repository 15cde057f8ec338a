"""Structure sources: the only code that reads external data (files here, HTTP later)."""

from matscreen.tasks.sources.records import (
    IngestResult,
    RecordFailure,
    SourceSnapshot,
    StructureRecord,
)

__all__ = ["IngestResult", "RecordFailure", "SourceSnapshot", "StructureRecord"]
