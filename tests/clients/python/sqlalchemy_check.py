"""SQLAlchemy 2 over psycopg2: Core (metadata.create_all, inspect().has_table,
insert/select) and ORM (session add/query/commit, rollback, savepoints)."""

from sqlalchemy import BigInteger, Column, String, Table, create_engine, insert, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from common import expect, settings

s = settings()
engine = create_engine(
    f"postgresql+psycopg2://{s['user']}@{s['host']}:{s['port']}/{s['dbname']}"
)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "sa_users"
    # autoincrement=False: Arbor has no sequences yet, so no BIGSERIAL.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(50))


notes = Table(
    "sa_notes",
    Base.metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("body", String),
)

Base.metadata.drop_all(engine)
Base.metadata.create_all(engine)
inspector = inspect(engine)
expect(inspector.has_table("sa_users"), True, "has_table sa_users")
expect(inspector.has_table("sa_missing"), False, "has_table sa_missing")

with engine.begin() as connection:
    connection.execute(insert(notes), [{"id": 1, "body": "one"}, {"id": 2, "body": "two"}])
with engine.connect() as connection:
    rows = connection.execute(select(notes.c.body).where(notes.c.id == 2)).all()
    expect([row.body for row in rows], ["two"], "core select")

with Session(engine) as session:
    session.add_all([User(id=1, name="ada"), User(id=2, name="grace")])
    session.commit()
with Session(engine) as session:
    user = session.query(User).filter_by(name="grace").one()
    expect(user.id, 2, "orm query")
    found = session.get(User, 1)
    expect(found.name, "ada", "orm get")
    found.name = "ada lovelace"
    session.commit()
with Session(engine) as session:
    expect(session.scalars(select(User.name).order_by(User.id)).all(), ["ada lovelace", "grace"], "orm select")

# Session transactions: rollback discards, a failed flush rolls back the
# whole unit of work, begin_nested() is a savepoint.
with Session(engine) as session:
    session.get(User, 2).name = "not saved"
    session.add(User(id=3, name="not saved either"))
    session.flush()
    session.rollback()
with Session(engine) as session:
    with session.begin():
        session.add(User(id=4, name="kept"))
        try:
            with session.begin_nested():
                session.add(User(id=1, name="duplicate"))
        except Exception as error:  # IntegrityError from the savepoint
            expect(type(error).__name__, "IntegrityError", "duplicate in savepoint")
        session.add(User(id=5, name="also kept"))
with Session(engine) as session:
    expect(
        session.scalars(select(User.name).order_by(User.id)).all(),
        ["ada lovelace", "grace", "kept", "also kept"],
        "session transactions",
    )

Base.metadata.drop_all(engine)
expect(inspect(engine).has_table("sa_users"), False, "dropped")
print("sqlalchemy ok")
