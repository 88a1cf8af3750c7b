def test_registers_sticky_at_socket_io_path(app):
    assert app.config['SERVICE_URL'] == '/socket.io'
    assert app.config['LB_ALGORITHM'] == 'source'


def test_health(client):
    rv = client.get('/health')
    assert rv.status == 200
    assert rv.json['service'] == 'socketio'
