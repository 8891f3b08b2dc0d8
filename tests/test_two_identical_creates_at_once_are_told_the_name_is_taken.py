"""Two identical creates at once (a client that retries or hedges its POST, a
double submit) must answer the second as any create of a taken name is answered: a 400 on
`name`, "you already have an import with this name".

Regression (API hunt): the loser passed the serializer's check of the name (the winner had
not committed yet), then met the winner's row in `services.create_import`'s `full_clean()`,
whose unique check said `{"__all__": ["Scheduled import with this Owner and Name already
exists."]}`: a field called `__all__` the API documents nowhere, and the model's words. A
client that reads `errors["name"]` to tell "the name is taken" from other refusals misread it.
"""

import threading

import pytest
from django.db import connection

from tests.api_support import API, client_for, import_body

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_second_of_two_identical_creates_at_once_is_told_the_name_is_taken(alice):
    # Given two clients of alice, ready to send the same create at the same moment
    answers = []
    ready = threading.Barrier(2)

    def create():
        client = client_for(alice)
        ready.wait()
        answers.append(client.post(f"{API}/imports/", import_body(), format="json"))
        connection.close()

    # When both send it at once (five times over, to meet the race)
    for _ in range(5):
        answers.clear()
        threads = [threading.Thread(target=create) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        refused = [answer for answer in answers if answer.status_code != 201]
        created = [answer for answer in answers if answer.status_code == 201]
        # (the next round creates it again)
        for answer in created:
            client_for(alice).delete(f"{API}/imports/{answer.json()['id']}/")

        # Then one is created and the other is a 400 on `name`, in the API's words
        assert len(created) == 1, [answer.json() for answer in answers]
        assert refused[0].status_code == 400
        assert refused[0].json()["errors"] == {
            "name": ["you already have an import with this name"]
        }, refused[0].json()
