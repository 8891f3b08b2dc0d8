"""Step 1, fetch: open the import's source as a stream of bytes.

Fetching itself (HTTP, its limits, the private-address guard) is `tasks.fetch`. This step asks
for the file on a condition when the dataset holds a file whose server described it (ETag,
Last-Modified): a `304 Not Modified` then raises NotModified, the digest shortcut's cue.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING

from schedules.models import ImportRun

from ..byte_stream import NotModified, Validators
from ..fetch import open_source
from ..source_options import source_options
from .progress import ProgressReporter, stop_if_cancelled

if TYPE_CHECKING:
    from ..byte_stream import ByteStream

__all__ = ["NotModified", "open_file", "validators_of"]


def open_file(
    run: ImportRun, reporter: ProgressReporter, known: ImportRun | None
) -> AbstractContextManager[tuple[ByteStream, int | None]]:
    """The run's source as (stream, its length or None), decompressed, with the import's
    credential; conditional on `known`'s file when given. The file taken is noted on `run`."""
    imp = run.scheduled_import
    return open_source(
        imp.source_url,
        on_read=reporter.bytes_read,
        unless=validators_of(known) if known else None,
        options=replace(source_options(imp, run), stop_if_asked=lambda: stop_if_cancelled(run)),
    )


def validators_of(run: ImportRun) -> Validators:
    """What the server said about the file `run` fetched, to ask whether it changed since."""
    return Validators(etag=run.source_etag, last_modified=run.source_last_modified)
