DROP TABLE IF EXISTS psql_t;
CREATE TABLE psql_t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION DEFAULT 1.5);
INSERT INTO psql_t (id, name) VALUES (1, 'one'), (2, 'two');
SELECT id, name, score FROM psql_t ORDER BY id;
\dt
\d psql_t
\l
\conninfo
