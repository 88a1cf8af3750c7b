"""``edited_at`` (1.1.0): set by an edit, NULL otherwise, and added by an
expand-only migration that 1.0.0 code, running beside this one during an
upgrade, does not notice."""
import io

import sqlalchemy as sa
from alembic import command
from alembic.migration import MigrationContext
from flask import current_app
from flask_migrate import downgrade, upgrade

from microflack_messages.models import db

BEFORE = '1e0b84104def'     # the 1.0.0 schema
AFTER = '5b1e7c3a9d24'      # adds messages.edited_at

# The messages table as the 1.0.0 code knows it: the columns it names in
# its inserts and selects.
OLD_MESSAGES = sa.Table(
    'messages', sa.MetaData(),
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('created_at', sa.BigInteger),
    sa.Column('updated_at', sa.BigInteger),
    sa.Column('source', sa.Text),
    sa.Column('html', sa.Text),
    sa.Column('user_id', sa.Integer),
)


def test_null_after_post_set_after_put(client, token, rows, pusher, now):
    rv = client.post('/api/messages', {'source': 'first'}, token=token(3))
    assert rv.status == 201
    assert rv.json['edited_at'] is None
    location = rv.headers['Location']
    assert client.get(location).json['edited_at'] is None
    assert rows()[0]['edited_at'] is None

    pusher.pushes.clear()
    rv = client.put(location, {'source': 'second'}, token=token(3))
    assert rv.status == 204
    edited = client.get(location).json
    assert isinstance(edited['edited_at'], int)
    assert now <= edited['edited_at'] <= now + 2
    assert edited['edited_at'] == edited['updated_at']
    assert rows()[0]['edited_at'] == edited['edited_at']
    # The browsers learn it from the push of the edit.
    [(_, pushed)] = pusher.pushes
    assert pushed['edited_at'] == edited['edited_at']


def test_refused_edit_leaves_edited_at_null(client, token, add_message):
    message_id = add_message('mine', user_id=5)
    rv = client.put(f'/api/messages/{message_id}', {'source': 'x'},
                    token=token(6))
    assert rv.status == 403
    assert client.get(f'/api/messages/{message_id}').json['edited_at'] is None


def insert_the_old_way(source, user_id, now):
    """An insert as 1.0.0 writes it: edited_at is not named."""
    result = db.session.execute(
        sa.text('INSERT INTO messages (created_at, updated_at, source, html, '
                'user_id) VALUES (:now, :now, :source, :source, :user_id)'),
        {'now': now, 'source': source, 'user_id': user_id})
    db.session.commit()
    return result.lastrowid


def test_rows_inserted_the_old_way_are_served(app, client, token, now):
    with app.app_context():
        message_id = insert_the_old_way('from 1.0.0', 4, now)
    rv = client.get(f'/api/messages/{message_id}')
    assert rv.status == 200
    assert rv.json['source'] == 'from 1.0.0'
    assert rv.json['edited_at'] is None
    [listed] = client.get('/api/messages').json['messages']
    assert listed == rv.json
    # The new code edits them like its own.
    rv = client.put(f'/api/messages/{message_id}', {'source': 'by 1.1.0'},
                    token=token(4))
    assert rv.status == 204
    assert client.get(f'/api/messages/{message_id}').json['edited_at'] >= now


def test_old_code_reads_and_edits_rows_the_new_code_wrote(app, client, token):
    rv = client.post('/api/messages', {'source': 'new'}, token=token(2))
    message_id = rv.json['id']
    client.put(f'/api/messages/{message_id}', {'source': 'edited'},
               token=token(2))
    with app.app_context():
        [row] = db.session.execute(sa.select(OLD_MESSAGES)).mappings()
        assert row['source'] == 'edited' and row['user_id'] == 2
        # A 1.0.0 edit names only its own columns: edited_at stays as the
        # new code left it.
        db.session.execute(
            OLD_MESSAGES.update().where(OLD_MESSAGES.c.id == message_id)
            .values(source='edited by 1.0.0', html='edited by 1.0.0'))
        db.session.commit()
    rv = client.get(f'/api/messages/{message_id}')
    assert rv.json['source'] == 'edited by 1.0.0'
    assert rv.json['edited_at'] is not None


def current_revision():
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def message_columns():
    return {column['name']: column
            for column in sa.inspect(db.engine).get_columns('messages')}


def test_migration_round_trip_keeps_the_rows(app, now):
    with app.app_context():
        kept = insert_the_old_way('kept', 1, now)
        try:
            downgrade(revision=BEFORE)
            assert current_revision() == BEFORE
            assert 'edited_at' not in message_columns()
            upgrade(revision=AFTER)
            assert current_revision() == AFTER
            column = message_columns()['edited_at']
            # Expand only: nullable, no default that would fill old rows.
            assert column['nullable'] is True
            assert column['default'] is None
            assert isinstance(column['type'], sa.BigInteger)
            rows = db.session.execute(
                sa.text('SELECT id, source, edited_at FROM messages')).all()
            assert [tuple(row) for row in rows] == [(kept, 'kept', None)]
        finally:
            db.session.rollback()
            upgrade()
        assert current_revision() == AFTER


def migration_sql(start, end):
    """The statements the migrations from ``start`` to ``end`` run."""
    config = current_app.extensions['migrate'].migrate.get_config()
    config.output_buffer = io.StringIO()
    command.upgrade(config, f'{start}:{end}', sql=True)
    code = '\n'.join(line for line
                     in config.output_buffer.getvalue().splitlines()
                     if not line.startswith('--'))
    return [statement.strip() for statement in code.split(';')
            if statement.strip().startswith('ALTER TABLE')]


def test_the_column_is_added_in_place(app):
    """The migration is one ADD COLUMN; on MariaDB its exact statement
    passes with ALGORITHM=INSTANT, which MariaDB refuses for anything that
    would copy the table (SQLite never copies for ADD COLUMN)."""
    with app.app_context():
        [statement] = migration_sql(BEFORE, AFTER)
        assert 'ADD COLUMN edited_at' in statement
        if db.engine.dialect.name != 'mysql':
            return
        try:
            downgrade(revision=BEFORE)
            with db.engine.begin() as connection:
                connection.exec_driver_sql(
                    statement + ', ALGORITHM=INSTANT')
                connection.exec_driver_sql(
                    'ALTER TABLE messages DROP COLUMN edited_at')
        finally:
            upgrade()
        assert current_revision() == AFTER
