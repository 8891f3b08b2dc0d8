"""The benches' HTTP clients: 10 threads of the bench's own process load a web process on the
same two cores, so whatever a client spends on a request is taken from the server it measures.

`Client` is the standard library's http.client on one keep-alive connection per client (it
reconnects by itself when gunicorn's sync workers close one): 0.6 – 0.7 ms of CPU per request
here, against 1.9 – 2.1 ms for a requests Session (`SessionClient`, the benches' client until
issue 15's fourth round), which also holds the GIL longer while the other nine wait for it.
`compare` measures both on one URL, so the bench shows what its own client costs.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psutil
import requests

from .figures import percentile


class Client:
    """One client: `request(method, path)` -> (status, body, seconds)."""

    def __init__(self, base: str, headers: dict[str, str], cookies: dict[str, str]) -> None:
        parts = urlsplit(base)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self._headers = dict(headers)
        if cookies:
            self._headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())

    def request(self, method: str, path: str) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self._connection.request(method, path, headers=self._headers)
        response = self._connection.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started


class SessionClient:
    """The same through a requests Session, for `compare`."""

    def __init__(self, base: str, headers: dict[str, str], cookies: dict[str, str]) -> None:
        self._base = base
        self._session = requests.Session()
        self._session.headers.update(headers)
        self._session.cookies.update(cookies)

    def request(self, method: str, path: str) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        response = self._session.request(method, self._base + path, timeout=60)
        return response.status_code, response.content, time.perf_counter() - started


def load(
    base: str,
    path: str,
    headers: dict[str, str],
    cookies: dict[str, str],
    *,
    clients: int,
    count: int,
    warmup: int,
    client_class: Callable[..., Client | SessionClient] = Client,
) -> dict[str, float]:
    """`count` GETs of `path` by `clients` concurrent clients (after `warmup`): req/s, p50 and
    p95 (ms), and the CPU this process spent per request (the clients' own cost)."""
    local = threading.local()

    def get(_: int) -> float:
        if not hasattr(local, "client"):
            local.client = client_class(base, headers, cookies)
        status, body, seconds = local.client.request("GET", path)
        assert status == 200, (path, status, body[:300])
        return seconds

    me = psutil.Process()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(get, range(warmup)))
        cpu_before, started = me.cpu_times(), time.perf_counter()
        times = list(pool.map(get, range(count)))
        wall, cpu_after = time.perf_counter() - started, me.cpu_times()
    cpu = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    return {
        "rps": count / wall,
        "p50": percentile(times, 0.5) * 1000,
        "p95": percentile(times, 0.95) * 1000,
        "client_cpu_ms": cpu / count * 1000,
    }


def compare(base: str, path: str, headers: dict[str, str], **options: int) -> str:
    """One line: `path` loaded through each client in turn, twice (the machine's load drifts)."""
    cells = []
    for client_class in (SessionClient, Client, SessionClient, Client):
        figures = load(base, path, headers, {}, client_class=client_class, **options)
        cells.append(
            f"{client_class.__name__} p50 {figures['p50']:.1f} p95 {figures['p95']:.1f} ms,"
            f" client CPU {figures['client_cpu_ms']:.2f} ms/request"
        )
    return "; ".join(cells)
