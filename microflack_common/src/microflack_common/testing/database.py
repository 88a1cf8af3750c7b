"""A service's test database: the schema of its migrations, a clean state
between tests, many rows at once, and how the database runs a query."""
import json

from .fakes import FakeEtcd, FakeServiceClient, RecordingPusher, reset_fakes


def migrate_test_database(db):
    """Give the (app context's) test database exactly the schema of the
    service's migrations: a database kept from an earlier run may hold old
    tables, so everything is dropped first."""
    import sqlalchemy as sa
    from flask_migrate import upgrade

    leftovers = sa.MetaData()
    leftovers.reflect(bind=db.engine)
    leftovers.drop_all(bind=db.engine)
    upgrade()


def insert_rows(db, table, count, defaults, **columns):
    """Store ``count`` rows in one statement, quickly (no ORM, no push):
    each row is ``defaults`` (a function of the row's index 0..count-1)
    updated with ``columns``, values or functions of the index. Returns
    the new rows' ids, in the order stored."""
    import sqlalchemy as sa

    rows = []
    for index in range(count):
        row = defaults(index)
        for name, value in columns.items():
            row[name] = value(index) if callable(value) else value
        rows.append(row)
    last = db.session.scalar(sa.select(sa.func.max(table.c.id))) or 0
    db.session.execute(table.insert(), rows)
    db.session.commit()
    ids = db.session.scalars(sa.select(table.c.id).where(table.c.id > last)
                             .order_by(table.c.id)).all()
    assert len(ids) == count, 'someone else inserted rows meanwhile'
    return ids


def link_parts(url):
    """A link's path and its query parameters, as a dict."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    return parts.path, dict(parse_qsl(parts.query))


def seeded_ids(result):
    """The ids a seed command made, from its last line (``ids A-B``), as a
    range; the command (a Click test runner's result) must have succeeded."""
    from ..seeding import parse_id_range

    assert result.exit_code == 0, result.output
    last = result.stdout.splitlines()[-1]
    assert last.startswith('ids '), last
    return parse_id_range(last.removeprefix('ids '))


def query_plan(db, statement, params):
    """How the (app context's) database runs a SELECT with these bind
    parameters: on MariaDB, ``ANALYZE FORMAT=JSON`` (it runs the query and
    counts the rows each table access really read, ``r_rows``), parsed; on
    SQLite, the steps of ``EXPLAIN QUERY PLAN`` as strings."""
    import sqlalchemy as sa

    dialect = db.engine.dialect
    sql = statement.params(**params).compile(
        dialect=dialect, compile_kwargs={'literal_binds': True}).string
    if dialect.name == 'mysql':
        plan = db.session.execute(sa.text('ANALYZE FORMAT=JSON ' + sql))
        return json.loads(plan.scalar())
    return [row[-1] for row in db.session.execute(
        sa.text('EXPLAIN QUERY PLAN ' + sql))]


def tables_read(plan):
    """The table accesses of a MariaDB plan (:func:`query_plan`), wherever
    they are nested."""
    if isinstance(plan, dict):
        if isinstance(plan.get('table'), dict):
            yield plan['table']
        for value in plan.values():
            yield from tables_read(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from tables_read(value)


def stored_rows(app, db, model):
    """Every stored row of ``model``'s table as a dict, by id (columns the
    API never shows included)."""
    import sqlalchemy as sa

    with app.app_context():
        table = model.__table__
        result = db.session.execute(sa.select(table).order_by(table.c.id))
        return [dict(row._mapping) for row in result]


def empty_tables(db):
    """Delete every row of the models' tables (alembic_version stays)."""
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


def drop_pooled_connections(db):
    """As a MariaDB restart or its ``wait_timeout`` would: the server ends
    every connection of the app's pool (from a connection of its own), and
    the pool finds out only when it next uses them. Returns how many."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    assert db.engine.pool.checkedin(), 'the pool holds no connection'
    killer = sa.create_engine(db.engine.url, poolclass=NullPool)
    try:
        with killer.connect() as connection:
            ids = connection.exec_driver_sql(
                'SELECT id FROM information_schema.processlist '
                'WHERE db = DATABASE() AND id <> CONNECTION_ID()').scalars().all()
            for connection_id in ids:
                connection.exec_driver_sql(f'KILL CONNECTION {int(connection_id)}')
    finally:
        killer.dispose()
    return len(ids)


def database_app(create_app, config_class, db, **collaborators):
    """For a session-scoped ``app`` fixture (``yield from``): the app of
    ``config_class`` with its test database migrated, the fakes of this
    kit as its registry, other services and pusher unless
    ``collaborators`` name others; disposed of at the end."""
    class SessionConfig(config_class):
        # The app outlives each test: a revocation check must not be
        # answered from a cache an earlier test filled for an identical
        # token.
        REVOCATION_CACHE_SECONDS = 0

    collaborators = {'etcd': FakeEtcd(), 'http': FakeServiceClient(),
                     'pusher': RecordingPusher(), **collaborators}
    app = create_app(SessionConfig, **collaborators)
    with app.app_context():
        migrate_test_database(db)
    yield app
    with app.app_context():
        db.engine.dispose()


def clean_database_app(app, db):
    """Empty the app's tables (alembic_version stays) and its fakes."""
    with app.app_context():
        empty_tables(db)
    reset_fakes(app)
