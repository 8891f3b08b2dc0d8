"""A server whose JIT thresholds for importbeat's database or role are low (`ALTER DATABASE …
SET jit_above_cost = 0`, tuning meant for reports): every statement of a run was compiled with
LLVM first (33 ms of inlining for a sum of 10,000 numbers): a 100-row run took 0.7-1.3 s
instead of 0.02-0.04, 200,000 rows 3.0-3.7 s against 2.1-2.5 s (PostgreSQL 15,
tests/bench/bench_server_settings.py). importbeat's
sessions now run with `jit = off`, set in the statement each new connection already sends
(common/postgres.py).
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from common.database_backend.base import DatabaseWrapper
from tests.server_settings_support import a_server_with_jit

pytestmark = pytest.mark.django_db

STATEMENT = "SELECT sum(i) FROM generate_series(1, 10000) AS g(i)"


def test_a_session_of_importbeat_compiles_nothing_on_a_server_with_low_jit_thresholds():
    with a_server_with_jit() as server:
        # Given a server that compiles every statement of importbeat's database with LLVM
        with psycopg.connect(server.url, autocommit=True) as operator:
            for setting in ("jit_above_cost", "jit_inline_above_cost", "jit_optimize_above_cost"):
                operator.execute(f"ALTER DATABASE importbeat SET {setting} = 0")
        with psycopg.connect(server.url.replace("postgres@", "app@")) as other_application:
            compiled = other_application.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {STATEMENT}")
            compiled = compiled.fetchone()
        assert "JIT" in compiled[0][0], "the server compiles its statements"

        # When importbeat opens a session there and runs a statement
        session = DatabaseWrapper(
            {**connection.settings_dict, "NAME": "importbeat", "HOST": "127.0.0.1",
             "PORT": server.port, "USER": "app", "PASSWORD": ""},
            alias="server_with_jit",
        )  # fmt: skip
        try:
            with session.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {STATEMENT}")
                plan = cursor.fetchone()[0][0]
        finally:
            session.close()

    # Then nothing was compiled
    assert "JIT" not in plan
