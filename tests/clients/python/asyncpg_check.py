"""asyncpg: everything goes through prepared statements with binary
results, so this checks Describe's parameter and result types."""

import asyncio
import datetime

import asyncpg

from common import expect, settings


async def main():
    s = settings()
    connection = await asyncpg.connect(
        host=s["host"], port=s["port"], user=s["user"], database=s["dbname"]
    )
    await connection.execute("DROP TABLE IF EXISTS apg_orders")
    await connection.execute(
        "CREATE TABLE apg_orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, "
        "qty SMALLINT, placed DATE, paid BOOLEAN)"
    )
    await connection.execute(
        "INSERT INTO apg_orders (id, customer, qty, placed, paid) VALUES ($1, $2, $3, $4, $5)",
        1, "ada", 3, datetime.date(2024, 5, 1), True,
    )
    await connection.executemany(
        "INSERT INTO apg_orders (id, customer, qty) VALUES ($1, $2, $3)",
        [(2, "grace", 1), (3, "linus", 7)],
    )
    row = await connection.fetchrow(
        "SELECT id, customer, qty, placed, paid FROM apg_orders WHERE id = $1", 1
    )
    expect(tuple(row), (1, "ada", 3, datetime.date(2024, 5, 1), True), "fetchrow")
    rows = await connection.fetch("SELECT id FROM apg_orders WHERE id > $1 ORDER BY id", 1)
    expect([r["id"] for r in rows], [2, 3], "fetch range")
    statement = await connection.prepare("SELECT customer FROM apg_orders WHERE id = $1")
    for key, name in [(1, "ada"), (2, "grace"), (3, "linus")]:
        expect(await statement.fetchval(key), name, "prepared fetchval")
    status = await connection.execute("UPDATE apg_orders SET qty = $1 WHERE id = $2", 9, 3)
    expect(status, "UPDATE 1", "update status")
    async with connection.transaction():
        await connection.execute("DELETE FROM apg_orders WHERE id = $1", 2)
    expect(await connection.fetchval("SELECT count(*) FROM apg_orders"), 2, "count")
    try:
        await connection.execute("INSERT INTO apg_orders (id, customer) VALUES ($1, $2)", 1, "dup")
        raise AssertionError("duplicate accepted")
    except asyncpg.UniqueViolationError:
        pass
    await connection.execute("DROP TABLE apg_orders")
    await connection.close()


asyncio.run(main())
print("asyncpg ok")
