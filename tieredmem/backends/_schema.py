"""The SQLite file format: an append-only list of migrations.

``PRAGMA user_version`` holds the number of migrations applied; ``PRAGMA application_id``
marks the file as a tieredmem store.  Never edit a migration that has shipped: append a
new one.
"""

from __future__ import annotations

__all__ = ()

#: ``PRAGMA application_id`` of every tieredmem file ("TMEM").
APPLICATION_ID = 0x544D454D

MIGRATIONS: tuple[str, ...] = (
    # 1: items, expiry index, deferred full-text index, settings.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE items (
        id         INTEGER PRIMARY KEY,
        ns         TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      BLOB NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        UNIQUE (ns, key)
    );
    CREATE INDEX items_expires ON items (expires_at) WHERE expires_at IS NOT NULL;
    -- Rows whose full-text entry is stale.  The triggers that fill it (FTS_TRIGGERS) are
    -- created by the first full-text search, so a store that never searches text never
    -- pays for it; indexing itself is lazy (search, maintenance), never in a put.
    CREATE TABLE fts_pending (id INTEGER PRIMARY KEY);
    CREATE VIRTUAL TABLE items_fts USING fts5 (text, content='', contentless_delete=1);
    """,
)

FORMAT_VERSION = len(MIGRATIONS)

_NOT_INTERNAL = "NOT ({row}.ns = 'tieredmem' OR substr({row}.ns, 1, 10) = 'tieredmem' || char(31))"
_MARK = (
    "BEGIN INSERT INTO fts_pending (id) SELECT {row}.id "
    "WHERE NOT EXISTS (SELECT 1 FROM fts_pending WHERE id = {row}.id); END"
)
# No OR IGNORE in these triggers: inside a trigger the outer statement's conflict policy
# (an UPSERT's) would override it.  Internal namespaces (histories, states) are skipped.
FTS_TRIGGERS: tuple[str, ...] = tuple(
    f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON items "
    f"WHEN {_NOT_INTERNAL.format(row=row)} {_MARK.format(row=row)}"
    for name, event, row in (
        ("items_fts_insert", "INSERT", "new"),
        ("items_fts_update", "UPDATE OF value", "new"),
        ("items_fts_delete", "DELETE", "old"),
    )
)
#: Queue every existing (non-internal) row for indexing when full-text search is enabled.
FTS_BACKFILL = (
    f"INSERT INTO fts_pending (id) SELECT id FROM items WHERE {_NOT_INTERNAL.format(row='items')} "
    "AND id NOT IN (SELECT id FROM fts_pending)"
)
