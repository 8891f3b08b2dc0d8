"""A PUT or a pause sent again with the same If-Match, after its answer was lost, is answered
200: the state it asks is the import's (RFC 9110 13.1.1), and a change that changes nothing
makes no new version.

Regression (API hunt): it was told 412 "the import changed since the version you sent" though
the only change was its own.

urllib3's Retry (under `requests`) re-sends PUT and DELETE by default after a read timeout or a
dropped connection: they are idempotent. The first attempt was applied and made a new version;
the retry's If-Match named the old one, and the answer said another change came in between.
The client reports a conflict for an edit that was made (and, told to "read it again and send
your change on it", its user redoes work that is done). RFC 9110 13.1.1 lets the server answer
2xx when the state asked for is already the state held; a change that changes nothing (a second
pause of a paused import, a PUT of what a GET showed) also makes a new version, so two clients
sending the same state refuse each other.
"""

import pytest

from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_a_put_retried_with_the_same_if_match_is_not_told_another_changed_the_import(alice):
    # Given alice's import read with its version
    client = client_for(alice)
    imp = make_import(alice, SOURCE)
    read = client.get(f"{API}/imports/{imp.pk}/")
    body = {**read.json(), "description": "nightly prices"}

    # When her client PUTs a change with If-Match, and sends it again as its answer was lost
    first = client.put(f"{API}/imports/{imp.pk}/", body, format="json", HTTP_IF_MATCH=read["ETag"])
    again = client.put(f"{API}/imports/{imp.pk}/", body, format="json", HTTP_IF_MATCH=read["ETag"])

    # Then the retry is answered as what happened: the import holds exactly what it asks for
    assert first.status_code == 200, first.json()
    assert again.status_code == 200, again.json()


def test_a_pause_retried_with_the_same_if_match_is_not_told_another_changed_the_import(alice):
    # Given alice's import read with its version
    client = client_for(alice)
    imp = make_import(alice, SOURCE)
    read = client.get(f"{API}/imports/{imp.pk}/")

    # When her client pauses it with If-Match, and sends the pause again as its answer was lost
    first = client.post(f"{API}/imports/{imp.pk}/pause", HTTP_IF_MATCH=read["ETag"])
    again = client.post(f"{API}/imports/{imp.pk}/pause", HTTP_IF_MATCH=read["ETag"])

    # Then the retry is answered 200: the import is paused, as asked, and nothing else changed
    assert first.status_code == 200, first.json()
    assert again.status_code == 200, again.json()
