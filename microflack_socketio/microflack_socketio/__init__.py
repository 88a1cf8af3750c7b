"""The socketio service: relays the browsers' Socket.IO events to the APIs and
fans out the model pushes from Redis (``create_app`` in :mod:`.app`)."""
