// node-postgres: simple queries, parameterized (extended protocol) queries,
// named prepared statements, transactions and error codes. Connection
// settings come from the PG* environment variables.
'use strict';
const assert = require('assert');
const { Client } = require('pg');

async function main() {
  const client = new Client({ database: process.env.PGDATABASE || 'arbor' });
  await client.connect();
  await client.query('DROP TABLE IF EXISTS node_people');
  await client.query(
    'CREATE TABLE node_people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age SMALLINT, joined TIMESTAMP)');
  await client.query('INSERT INTO node_people (id, name, age) VALUES ($1, $2, $3)', [1, 'ada', 36]);
  await client.query('INSERT INTO node_people (id, name, age) VALUES (2, \'grace\', 45), (3, \'linus\', NULL)');
  const one = await client.query('SELECT id, name, age FROM node_people WHERE id = $1', [1]);
  assert.deepStrictEqual(one.rows, [{ id: 1, name: 'ada', age: 36 }]);
  for (let i = 0; i < 6; i++) {
    const named = await client.query({ name: 'by_id', text: 'SELECT name FROM node_people WHERE id = $1', values: [2] });
    assert.strictEqual(named.rows[0].name, 'grace');
  }
  await client.query('BEGIN');
  const updated = await client.query('UPDATE node_people SET age = $1 WHERE id = $2', [46, 2]);
  assert.strictEqual(updated.rowCount, 1);
  await client.query('COMMIT');
  const all = await client.query('SELECT name FROM node_people ORDER BY id');
  assert.deepStrictEqual(all.rows.map((row) => row.name), ['ada', 'grace', 'linus']);
  await assert.rejects(
    client.query('INSERT INTO node_people (id, name) VALUES ($1, $2)', [1, 'dup']),
    (error) => error.code === '23505');
  const returning = await client.query('DELETE FROM node_people WHERE id = $1 RETURNING name', [3]);
  assert.deepStrictEqual(returning.rows, [{ name: 'linus' }]);
  await client.query('DROP TABLE node_people');
  await client.end();
  console.log('node-postgres ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
