"""Creating or saving an import checked its time zone against `zoneinfo.available_timezones()`,
which walks the whole zone directory at every call (10 to 45 ms): a quarter of the time of
creating an import (suite hunt). The list is now read once a process."""

import zoneinfo

import pytest
from django.core.exceptions import ValidationError

from schedules import validation


def test_checking_zones_reads_the_zone_list_once(monkeypatch):
    # Given a process whose zone list has not been read yet
    validation.zone_names.cache_clear()
    read = []
    real = zoneinfo.available_timezones
    monkeypatch.setattr(zoneinfo, "available_timezones", lambda: read.append(1) or real())

    # When three imports' zones are checked, one of them no zone
    validation.validate_timezone("Europe/Berlin")
    validation.validate_timezone("America/Santiago")
    with pytest.raises(ValidationError, match="is not an IANA time zone name"):
        validation.validate_timezone("Europe/Atlantis")

    # Then the zone directory was walked once, and the checks still tell zones apart
    assert read == [1]
    with pytest.raises(ValidationError):
        validation.validate_timezone("localtime")
