"""Code-index stores behind one protocol: SQLite (embedded) and PostgreSQL (scale-out)."""

from hexahub.context.stores.base import IndexStore, StoreUnavailable
from hexahub.context.stores.postgres import PostgresStore
from hexahub.context.stores.sqlite import SqliteStore

__all__ = ["IndexStore", "PostgresStore", "SqliteStore", "StoreUnavailable"]
