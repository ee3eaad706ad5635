// pgjdbc (Debian's libpostgresql-jdbc-java): Statement, a PreparedStatement
// run more than prepareThreshold (5) times so the driver switches to a named
// server-side statement with binary transfer, batch insert, DatabaseMetaData
// getTables/getColumns, autocommit on, then autocommit off with commit,
// rollback and a failed transaction (25P02). Usage: JdbcCheck <jdbc url>.
import java.sql.*;
import java.util.*;

public class JdbcCheck {
    static void expect(Object actual, Object expected, String what) {
        if (!Objects.equals(actual, expected)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        properties.setProperty("user", System.getenv().getOrDefault("PGUSER", "arbor"));
        try (Connection connection = DriverManager.getConnection(args[0], properties)) {
            expect(connection.getAutoCommit(), true, "autocommit");
            try (Statement statement = connection.createStatement()) {
                statement.execute("DROP TABLE IF EXISTS jdbc_accounts");
                statement.execute("CREATE TABLE jdbc_accounts (id BIGINT PRIMARY KEY, owner VARCHAR(40) NOT NULL, "
                        + "balance DOUBLE PRECISION, opened DATE, active BOOLEAN DEFAULT true)");
                expect(statement.executeUpdate(
                        "INSERT INTO jdbc_accounts (id, owner, balance) VALUES (1, 'ada', 10.5)"), 1, "insert count");
            }
            try (PreparedStatement insert = connection.prepareStatement(
                    "INSERT INTO jdbc_accounts (id, owner, balance, opened) VALUES (?, ?, ?, ?)")) {
                for (int id = 2; id <= 11; id++) {
                    insert.setLong(1, id);
                    insert.setString(2, "owner" + id);
                    insert.setDouble(3, id * 1.5);
                    insert.setDate(4, java.sql.Date.valueOf("2024-05-0" + (id % 9 + 1)));
                    insert.addBatch();
                }
                int[] counts = insert.executeBatch();
                expect(counts.length, 10, "batch size");
            }
            try (PreparedStatement select = connection.prepareStatement(
                    "SELECT id, owner, balance, opened, active FROM jdbc_accounts WHERE id = ?")) {
                for (int round = 0; round < 8; round++) {
                    long id = 2 + round;
                    select.setLong(1, id);
                    try (ResultSet rows = select.executeQuery()) {
                        expect(rows.next(), true, "row " + id);
                        expect(rows.getLong(1), id, "id");
                        expect(rows.getString(2), "owner" + id, "owner");
                        expect(rows.getDouble(3), id * 1.5, "balance");
                        expect(rows.getDate(4).toString(), "2024-05-0" + (id % 9 + 1), "opened");
                        expect(rows.getBoolean(5), true, "active");
                        expect(rows.next(), false, "one row");
                    }
                }
            }
            try (PreparedStatement update = connection.prepareStatement(
                    "UPDATE jdbc_accounts SET balance = ? WHERE id = ?")) {
                for (int round = 0; round < 7; round++) {
                    update.setDouble(1, round);
                    update.setLong(2, 1);
                    expect(update.executeUpdate(), 1, "update count");
                }
            }
            try (Statement statement = connection.createStatement();
                 ResultSet rows = statement.executeQuery("SELECT count(*) FROM jdbc_accounts")) {
                rows.next();
                expect(rows.getLong(1), 11L, "count");
            }
            DatabaseMetaData meta = connection.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rows = meta.getTables(null, "public", "jdbc_%", new String[] {"TABLE"})) {
                while (rows.next()) {
                    tables.add(rows.getString("TABLE_NAME"));
                }
            }
            expect(tables, List.of("jdbc_accounts"), "getTables");
            List<String> columns = new ArrayList<>();
            try (ResultSet rows = meta.getColumns(null, "public", "jdbc_accounts", null)) {
                while (rows.next()) {
                    columns.add(rows.getString("COLUMN_NAME") + ":" + rows.getString("TYPE_NAME")
                            + ":" + rows.getInt("NULLABLE"));
                }
            }
            expect(columns, List.of("id:int8:0", "owner:varchar:0", "balance:float8:1", "opened:date:1",
                    "active:bool:1"), "getColumns");
            try (Statement statement = connection.createStatement()) {
                try {
                    statement.execute("INSERT INTO jdbc_accounts (id, owner) VALUES (1, 'dup')");
                    throw new AssertionError("duplicate accepted");
                } catch (SQLException error) {
                    expect(error.getSQLState(), "23505", "sqlstate");
                }
            }
            // Autocommit off: the driver sends BEGIN before the first statement.
            connection.setAutoCommit(false);
            try (PreparedStatement move = connection.prepareStatement(
                    "UPDATE jdbc_accounts SET balance = ? WHERE id = ?")) {
                move.setDouble(1, 2.0);
                move.setLong(2, 2);
                expect(move.executeUpdate(), 1, "debit");
                move.setDouble(1, 5.5);
                move.setLong(2, 3);
                expect(move.executeUpdate(), 1, "credit");
            }
            connection.commit();
            try (Statement statement = connection.createStatement()) {
                statement.executeUpdate("UPDATE jdbc_accounts SET balance = 0 WHERE id = 2");
                statement.executeUpdate("INSERT INTO jdbc_accounts (id, owner) VALUES (99, 'rolled back')");
            }
            connection.rollback();
            // A failed statement inside the transaction: pgjdbc's
            // autosave=never semantics, the rest fails until rollback.
            try (Statement statement = connection.createStatement()) {
                try {
                    statement.execute("SELECT * FROM jdbc_missing");
                    throw new AssertionError("missing table accepted");
                } catch (SQLException error) {
                    expect(error.getSQLState(), "42P01", "sqlstate in transaction");
                }
                try {
                    statement.execute("SELECT 1");
                    throw new AssertionError("statement ran in a failed transaction");
                } catch (SQLException error) {
                    expect(error.getSQLState(), "25P02", "failed transaction");
                }
            }
            connection.rollback();
            connection.setAutoCommit(true);
            try (Statement statement = connection.createStatement();
                 ResultSet rows = statement.executeQuery(
                         "SELECT id, balance FROM jdbc_accounts WHERE id = 2 OR id = 3 OR id = 99 ORDER BY id")) {
                List<String> seen = new ArrayList<>();
                while (rows.next()) {
                    seen.add(rows.getLong(1) + "=" + rows.getDouble(2));
                }
                expect(seen, List.of("2=2.0", "3=5.5"), "committed transfer, rolled-back writes gone");
            }
            try (Statement statement = connection.createStatement()) {
                statement.execute("DROP TABLE jdbc_accounts");
            }
        }
        System.out.println("pgjdbc ok");
    }
}
