"""Shared helpers for the Python client checks: connection settings come
from the standard PG* environment variables that tests/tests/clients.rs sets,
and every check fails loudly (non-zero exit) on the first mismatch."""

import os


def settings():
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", "5433")),
        "user": os.environ.get("PGUSER", "arbor"),
        "dbname": os.environ.get("PGDATABASE", "arbor"),
    }


def expect(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")
