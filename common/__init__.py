"""The small pieces every process and every package shares, and that import none of them.

The Redis client, its leases and the key names that processes share; the broker probe; the
PostgreSQL versions supported; a library's errors in plain words; who is on the other end of a
request; the heartbeat that keeps a streamed response's web worker alive. `project` (the entry
points: settings, urls, the Celery app, beat), `tasks` and `schedules` all import from here,
and nothing here imports them (STYLE rule 15: the layers contract in pyproject.toml).
"""
