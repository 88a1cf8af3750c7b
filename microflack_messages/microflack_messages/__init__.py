"""The messages service: posting, editing and listing messages, markdown
rendering and link previews (``create_app`` in :mod:`.app`)."""
