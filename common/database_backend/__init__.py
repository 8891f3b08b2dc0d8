"""Django's PostgreSQL backend, which says when a kept connection failed its check (base.py)."""
