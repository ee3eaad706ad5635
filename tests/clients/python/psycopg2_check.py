"""psycopg2: connect, DDL, parameterized writes and reads, executemany,
transactions (BEGIN/COMMIT issued by the driver), error recovery."""

import decimal

import psycopg2
import psycopg2.errors

from common import expect, settings

connection = psycopg2.connect(**settings())
cursor = connection.cursor()
cursor.execute("DROP TABLE IF EXISTS py2_items")
cursor.execute(
    "CREATE TABLE py2_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
    "price NUMERIC, active BOOLEAN DEFAULT true)"
)
connection.commit()
cursor.execute(
    "INSERT INTO py2_items (id, name, price) VALUES (%s, %s, %s)",
    (1, "apple", decimal.Decimal("1.25")),
)
cursor.executemany(
    "INSERT INTO py2_items (id, name, price) VALUES (%s, %s, %s)",
    [(2, "pear", decimal.Decimal("2.50")), (3, "plum", None)],
)
connection.commit()
cursor.execute("SELECT id, name, price, active FROM py2_items WHERE id = %s", (1,))
expect(cursor.fetchone(), (1, "apple", decimal.Decimal("1.25"), True), "point select")
cursor.execute("SELECT count(*) FROM py2_items")
expect(cursor.fetchone()[0], 3, "count")
cursor.execute("UPDATE py2_items SET name = %s WHERE id = %s", ("PEAR", 2))
expect(cursor.rowcount, 1, "update rowcount")
connection.commit()
try:
    cursor.execute("INSERT INTO py2_items (id, name) VALUES (1, 'dup')")
    raise AssertionError("duplicate key accepted")
except psycopg2.errors.UniqueViolation:
    connection.rollback()
cursor.execute("SELECT name FROM py2_items ORDER BY id")
expect([row[0] for row in cursor.fetchall()], ["apple", "PEAR", "plum"], "names")
cursor.execute("SELECT current_setting('server_version_num')::int >= 90600")
expect(cursor.fetchone()[0], True, "current_setting")
connection.commit()
cursor.execute("DROP TABLE py2_items")
connection.commit()
connection.close()
print("psycopg2 ok")
