"""What reading an import's source needs besides its URL, built from the import in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schedules.models import ScheduledImport


@dataclass(frozen=True)
class SourceOptions:
    # The file to read out of a zip archive holding several ("" when it holds one).
    member: str = ""


def source_options(imp: ScheduledImport) -> SourceOptions:
    return SourceOptions(member=imp.source_member or "")
