"""The ui service: serves the single-page chat client (``create_app`` in
:mod:`.app`)."""
