"""The records' JSON renderer: DRF's, writing a Decimal as the number it is."""

from __future__ import annotations

from typing import Any

from rest_framework.compat import LONG_SEPARATORS, SHORT_SEPARATORS
from rest_framework.renderers import JSONRenderer

from schedules import exact_json


class ExactJSONRenderer(JSONRenderer):
    """A record's `decimal` value is served with the digits the dataset holds: DRF's encoder
    wrote every Decimal as a float (`12345678901234567890.12` as `1.2345678901234567e+19`)."""

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if data is None:
            return b""
        text = exact_json.dumps(
            data,
            default=self.encoder_class().default,
            ensure_ascii=self.ensure_ascii,
            allow_nan=not self.strict,
            separators=SHORT_SEPARATORS if self.compact else LONG_SEPARATORS,
        )
        # As DRF's: these two are line breaks to JavaScript, not in JSON strings.
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
