"""Step 1, fetch: open the import's source as a stream of bytes.

Fetching itself (HTTP, its limits, the private-address guard) is `tasks.fetch`. This step asks
for the file on a condition when the dataset holds a file whose server described it (ETag,
Last-Modified): a `304 Not Modified` then raises NotModified, the digest shortcut's cue.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from schedules.models import ImportRun, ScheduledImport

from ..fetch import NotModified, Validators, open_source
from .progress import ProgressReporter

if TYPE_CHECKING:
    from ..fetch import ByteStream

__all__ = ["NotModified", "open_file", "validators_of"]


def open_file(
    imp: ScheduledImport, reporter: ProgressReporter, known: ImportRun | None
) -> AbstractContextManager[tuple[ByteStream, int | None]]:
    """The download as (stream, Content-Length); conditional on `known`'s file when given."""
    return open_source(
        imp.source_url,
        on_read=reporter.bytes_read,
        unless=validators_of(known) if known else None,
    )


def validators_of(run: ImportRun) -> Validators:
    """What the server said about the file `run` fetched, to ask whether it changed since."""
    return Validators(etag=run.source_etag, last_modified=run.source_last_modified)
