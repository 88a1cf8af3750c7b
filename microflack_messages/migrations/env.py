"""Alembic's environment for this service's migrations: the one that every
MicroFlack service shares."""
from microflack_common.migration_env import run_migrations

run_migrations()
