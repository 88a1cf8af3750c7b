"""The tokens service: issues, checks and revokes JSON Web Tokens
(``create_app`` in :mod:`.app`)."""
