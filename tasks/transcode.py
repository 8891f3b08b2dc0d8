"""A file in UTF-16 or UTF-32 (Excel's "Unicode text", tab-separated) is read as UTF-8.

The import engine finds lines, quotes and delimiters in bytes, and PostgreSQL's COPY reads
encodings whose characters below 128 are single bytes: in UTF-16 every such character holds a
NUL byte, so the file was refused as "binary data", whatever encoding the import named. Its
text is decoded as it streams and handed on as UTF-8, to the fast path and the csv module
alike; its lines stay its lines, so bad rows keep their line numbers.
"""

from __future__ import annotations

import codecs
import io

from .errors import PermanentImportError

# Encodings whose characters below 128 are not single bytes (codecs.lookup's names).
WIDE_ENCODINGS = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
# Byte-order marks that say a file is UTF-32 or UTF-16 (the longer first: UTF-32 LE's begins
# with UTF-16 LE's).
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
READ_BYTES = 256 * 1024


def transcoded_from(encoding: str) -> str:
    """`encoding`'s codec when it is a wide one, which the file is transcoded from; "" when it
    is not (or is no codec: the engine refuses it, saying why)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return ""
    return name if name in WIDE_ENCODINGS else ""


def wide_encoding_of(head: bytes) -> str:
    """The wide encoding a byte-order mark at the start of `head` names, "" when none does."""
    return next((name for mark, name in BYTE_ORDER_MARKS if head.startswith(mark)), "")


class Transcoded(io.RawIOBase):
    """`source`'s text, decoded from `encoding` as it streams, as UTF-8 bytes; the source's
    `validators` and `source_file` pass through."""

    def __init__(self, source: io.RawIOBase, encoding: str) -> None:
        self._source = source
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._pending = b""
        self._ended = False
        self._decoded = 0  # bytes of the source decoded so far
        self.validators = getattr(source, "validators", None)
        self.source_file = getattr(source, "source_file", "")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending and not self._ended:
            data = self._source.read(READ_BYTES)
            self._ended = not data
            try:
                text = self._decoder.decode(data or b"", final=self._ended)
            except UnicodeError as error:
                # UnicodeError itself: UTF-16's and UTF-32's decoders say so of a file
                # without a byte-order mark, which ran as "an unexpected error in importbeat".
                raise PermanentImportError(self._undecodable(error)) from None
            self._decoded += len(data or b"")
            self._pending = text.encode("utf-8")
        taken = self._pending[: len(buffer)]
        buffer[: len(taken)] = taken
        self._pending = self._pending[len(taken) :]
        return len(taken)

    def _undecodable(self, error: UnicodeError) -> str:
        """What is wrong with the file, in plain words."""
        encoding = self._encoding
        if isinstance(error, UnicodeDecodeError):
            at = self._decoded + error.start
            return (
                f"the file is not valid {encoding} at byte {at:,} ({error.reason}); "
                f"set the import's encoding"
            )
        wide = codecs.lookup(encoding).name
        if wide in ("utf-16", "utf-32"):
            return (
                f"the file does not begin with a {wide.upper()} byte-order mark, which the "
                f"import's encoding {encoding} needs to tell the byte order: set the import's "
                f"encoding to {wide}-le or {wide}-be for {wide.upper()} without one, or to the "
                f"file's own encoding (e.g. utf-8)"
            )
        return f"the file is not valid {encoding}; set the import's encoding"
