"""Records' numbers as they are stored: a `decimal` column's value is exact in the dataset
(PostgreSQL's numeric in JSONB), and is read and served exactly.

Python's json module reads every number with a fraction as a float and can write no Decimal:
`12345678901234567890.12` was served as `1.2345678901234567e+19`, and the CSV export wrote the
same. Read with `parse_float=Decimal` and written by simplejson, which writes a Decimal as the
number it is.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import simplejson


class ExactDecimal(Decimal):
    """A Decimal written with the digits it was read with: PostgreSQL writes a numeric's
    digits out plain, and Decimal's own str() turned `0.00000001` into `1E-8` (the API, the
    export and a `?field=` filter copied from them then disagreed with the dataset)."""

    def __str__(self) -> str:
        return format(self, "f")


class ExactDecoder(json.JSONDecoder):
    """Numbers with a fraction or an exponent as Decimal (`Record.data`'s decoder)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parse_float", ExactDecimal)
        super().__init__(*args, **kwargs)


def dumps(value: Any, **options: Any) -> str:
    """JSON of `value`, a Decimal written as its number."""
    return simplejson.dumps(value, use_decimal=True, **options)
