"""psycopg 3: server-side parameters (extended protocol), explicit prepared
statements, binary results and parameters, executemany, autocommit, and transaction
blocks with savepoints (`with connection.transaction()`)."""

import datetime
import uuid

import psycopg

from common import expect, settings

with psycopg.connect(**settings(), autocommit=True) as connection:
    connection.execute("DROP TABLE IF EXISTS py3_events")
    connection.execute(
        "CREATE TABLE py3_events (id INTEGER PRIMARY KEY, tag VARCHAR(20), "
        "at TIMESTAMPTZ, ref UUID, score DOUBLE PRECISION, payload BYTEA)"
    )
    at = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
    ref = uuid.UUID("12345678-1234-5678-1234-567812345678")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO py3_events (id, tag, at, ref, score, payload) VALUES (%s, %s, %s, %s, %s, %s)",
            (1, "first", at, ref, 0.5, b"\x00\x01"),
        )
        cursor.executemany(
            "INSERT INTO py3_events (id, tag) VALUES (%s, %s)",
            [(2, "second"), (3, "third")],
        )
        # prepare=True makes psycopg use a named server-side statement.
        for attempt in range(6):
            cursor.execute("SELECT tag FROM py3_events WHERE id = %s", (2,), prepare=True)
            expect(cursor.fetchone(), ("second",), f"prepared select {attempt}")
    with connection.cursor(binary=True) as cursor:
        cursor.execute("SELECT id, tag, at, ref, score, payload FROM py3_events WHERE id = %b", (1,))
        expect(cursor.fetchone(), (1, "first", at, ref, 0.5, b"\x00\x01"), "binary row")
        cursor.execute("SELECT id FROM py3_events WHERE id >= %s ORDER BY id", (2,))
        expect(cursor.fetchall(), [(2,), (3,)], "binary range")
    cursor = connection.execute("DELETE FROM py3_events WHERE id = %s RETURNING tag", (3,))
    expect(cursor.fetchall(), [("third",)], "delete returning")
    expect(connection.execute("SHOW server_version").fetchone()[0].split(".")[0].isdigit(), True, "show")
    # Transactions: `with connection.transaction()` commits on success and
    # rolls back on an exception; nested blocks are savepoints.
    with connection.transaction():
        connection.execute("UPDATE py3_events SET tag = 'committed' WHERE id = 1")
        connection.execute("INSERT INTO py3_events (id, tag) VALUES (10, 'ten')")
    try:
        with connection.transaction():
            connection.execute("UPDATE py3_events SET tag = 'lost' WHERE id = 1")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    with connection.transaction():
        connection.execute("INSERT INTO py3_events (id, tag) VALUES (11, 'eleven')")
        try:
            with connection.transaction():
                connection.execute("INSERT INTO py3_events (id, tag) VALUES (10, 'duplicate')")
        except psycopg.errors.UniqueViolation:
            pass
        connection.execute("INSERT INTO py3_events (id, tag) VALUES (12, 'twelve')")
    rows = connection.execute("SELECT id, tag FROM py3_events WHERE id = 1 OR id >= 10 ORDER BY id").fetchall()
    expect(rows, [(1, "committed"), (10, "ten"), (11, "eleven"), (12, "twelve")], "transaction blocks")
    connection.execute("DROP TABLE py3_events")
print("psycopg3 ok")
