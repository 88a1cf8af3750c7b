"""``nickname_key`` (users 1.3.0, issue 19 finding 9): added by an
expand-only migration that gives existing users their keys (the oldest of
lookalikes keeps it), while rows the release before inserts have none."""
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from microflack_users.models import db

BEFORE = '8f3c2a61d7e4'     # the schema before the key


def insert_the_old_way(nickname, now):
    """An insert as the release before writes it: no nickname_key."""
    result = db.session.execute(
        sa.text('INSERT INTO users (created_at, updated_at, nickname, '
                'password_hash, last_seen_at, online) VALUES (:now, :now, '
                ':nickname, :hash, :now, :online)'),
        {'now': now, 'nickname': nickname, 'hash': 'x', 'online': False})
    db.session.commit()
    return result.lastrowid


def keys():
    return dict(db.session.execute(
        sa.text('SELECT nickname, nickname_key FROM users')).all())


def test_existing_users_get_their_keys(app, client, now):
    with app.app_context():
        try:
            downgrade(revision=BEFORE)
            for nickname in ('susan', 'david', 'SUSAN', 'ｄａｖｉｄ'):
                insert_the_old_way(nickname, now)
            upgrade()
            assert keys() == {'susan': 'susan', 'david': 'david',
                              'SUSAN': None, 'ｄａｖｉｄ': None}
        finally:
            db.session.rollback()
            upgrade()
    # Taken, whichever spelling comes now.
    for nickname in ('Susan', 'DAVID'):
        rv = client.post('/api/users', {'nickname': nickname,
                                        'password': 'x'})
        assert rv.status == 400, nickname


def test_rows_of_the_release_before_are_served(app, client, token, now):
    """During a roll the release before inserts users without a key: they
    are served, and a rename by this release gives them one."""
    with app.app_context():
        user_id = insert_the_old_way('zoe', now)
        assert keys() == {'zoe': None}
    rv = client.get(f'/api/users/{user_id}')
    assert rv.status == 200 and rv.json['nickname'] == 'zoe'
    rv = client.put(f'/api/users/{user_id}', {'nickname': 'Zoe'},
                    token=token(user_id))
    assert rv.status == 204
    with app.app_context():
        assert keys() == {'Zoe': 'zoe'}
