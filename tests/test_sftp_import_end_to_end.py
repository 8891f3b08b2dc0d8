"""An SFTP import end to end with real worker, beat and Flower processes, and the credentials
it and an HTTP import carry found nowhere a user or an operator can read: API answers, the
processes' logs, run errors, Flower's task view, the change history (issue 14)."""

import pytest
import requests
from auditlog.models import LogEntry

from schedules.models import ImportRun
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records
from tests.reliability import start_flower, wait_for_the_end
from tests.sftp_support import TEST_ENCRYPTION_KEY
from tests.test_http_credentials import AuthServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.usefixtures("encryption_key"),
]

AUTH = ("ops", "s3cret-flower")
TOKEN = "bearer-token-that-must-not-leak"


def test_an_sftp_import_runs_on_schedule_and_no_credential_leaks(alice, sftp_server, processes):
    # Given an SFTP import with a private key and its passphrase, and an HTTP import whose
    # server refuses its bearer token
    sftp_server.put("products_1.csv", PRODUCTS_CSV)
    sftp = make_import(
        alice, sftp_server.url("products_*.csv"), credential=sftp_server.credential,
        interval_seconds=2,
    )  # fmt: skip
    http_server = AuthServer(("Authorization", "Bearer another-token"))
    http = make_import(
        alice, http_server.url("/products.csv"), name="http", dataset="http",
        credential={"kind": "bearer", "token": TOKEN}, max_retries=0,
    )  # fmt: skip
    key = TEST_ENCRYPTION_KEY
    for name in ("worker", "beat"):
        processes.start(name, IMPORTBEAT_ENCRYPTION_KEY=key)
    flower = start_flower(processes, AUTH)

    # When beat fires the SFTP import, alice runs the HTTP one and checks an SFTP source
    # before saving it (a worker fetches it; its task names only where the fields wait)
    scheduled = wait_for(
        # The first: a tick every 2 s, so a later run may have re-read the file unchanged.
        lambda: (
            ImportRun.objects.filter(scheduled_import=sftp, trigger="schedule", status="succeeded")
            .order_by("pk")
            .first()
        ),
        60,
        what="a scheduled SFTP run to succeed\n" + processes.logs(),
    )
    client = client_for(alice)
    queued = client.post(f"{API}/imports/{http.pk}/run").json()
    failed = wait_for_the_end(ImportRun.objects.get(pk=queued["id"]), processes)
    body = {
        "name": "checked", "source_url": sftp_server.url("products_*.csv"), "dataset": "c",
        "key_column": "sku", "schedule_type": "interval", "interval_seconds": 3600,
        "credential": sftp_server.credential,
    }  # fmt: skip
    checked = client.post(f"{API}/imports/check", body, format="json")

    # Then the SFTP run landed the rows from the file it names, with the host key pinned
    assert scheduled.rows_inserted == 3 and len(records(sftp)) == 3
    assert scheduled.source_file.endswith("/products_1.csv")
    sftp.refresh_from_db()
    assert sftp.host_key_fingerprint.startswith("SHA256:")
    # ... the HTTP run failed on the refused token, and the check found the file
    assert failed.status == "failed" and "refused access (HTTP 401" in failed.error_message
    assert checked.json()["ok"], checked.content
    # ... and no secret is in what anyone can read
    secrets = {
        "the token": TOKEN,
        "the passphrase": sftp_server.client_passphrase,
        "the private key": sftp_server.client_key.splitlines()[2],
    }
    answers = [
        client.get(f"{API}/imports/").content,
        client.get(f"{API}/imports/{sftp.pk}/").content,
        client.get(f"{API}/imports/{http.pk}/").content,
        client.get(f"{API}/runs/").content,
        client.get(f"{API}/runs/{failed.pk}/").content,
        client.get(f"{API}/runs/{scheduled.pk}/").content,
        client.get(f"{API}/imports/{sftp.pk}/history/").content,
        checked.content,
    ]
    tasks = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).text
    assert '"name": "importbeat.check_source_fields"' in tasks or "check_source_fields" in tasks
    logs = "".join(p.read_text(errors="replace") for p in processes.log_dir.glob("*.log"))
    errors = str(list(ImportRun.objects.values("error_message", "error_details")))
    history = str(list(LogEntry.objects.values()))
    places = {
        "API answers": b"".join(answers).decode(),
        "process logs": logs,
        "run errors": errors,
        "Flower's tasks": tasks,
        "the history": history,
    }
    leaks = [
        f"{what} in {place}"
        for what, secret in secrets.items()
        for place, text in places.items()
        if secret in text
    ]
    assert leaks == []
    assert "run finished" in logs  # the logs are the real ones
