"""Code shared by every MicroFlack service.

One module per concern: ``config`` (settings from the environment),
``tokens`` (JWT), ``auth`` (Flask-HTTPAuth handlers), ``revocation``,
``etcd_client``, ``names`` (what names and tags may hold),
``registration``, ``service_client`` (inter-service HTTP),
``events`` (``updated_model`` pushes), ``errors``, ``validation``,
``db_lock`` and ``migrate`` (schema upgrades one instance at a time),
``paging`` (paged lists), ``service`` (wiring it all into a Flask app),
``seeding`` (the seed commands' bulk inserts), ``testing`` and ``utils``.
"""

__version__ = "1.0.0"
