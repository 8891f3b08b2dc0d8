"""A webhook carries no login of the worker's own environment (~/.netrc, proxy settings), as a
download carries none: the callback URL is any user's choice. The worker's `~/.netrc` login for
a host was sent to whatever callback URL a user saved for that host (or, with a `default`
entry, for any host)."""

from __future__ import annotations

import pytest

from tasks import webhooks
from tests.webhook_support import Hook


@pytest.fixture
def workers_netrc(tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("default login ops password s3cret-of-the-operator\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that would refuse


def test_a_webhook_is_posted_without_the_workers_netrc_login_or_proxy(workers_netrc):
    hook = Hook()
    try:
        # When a webhook is posted from a worker whose environment holds a login and a proxy
        answer = webhooks.post(hook.url, {"event": "run.succeeded"}, "secret")

        # Then it goes straight to the receiver, with no Authorization header
        assert answer.status == 200
        [(headers, _body)] = hook.requests
        assert "Authorization" not in headers
    finally:
        hook.close()
