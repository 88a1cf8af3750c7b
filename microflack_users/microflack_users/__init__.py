"""The users service: registration, profiles, logins and who is online
(``create_app`` in :mod:`.app`)."""
