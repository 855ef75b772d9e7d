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
    -- Rows whose full-text entry is stale; indexed lazily (search, maintenance) so a
    -- put never pays for tokenizing.  (No OR IGNORE here: inside a trigger the outer
    -- statement's conflict policy would override it.)  Internal namespaces ('tieredmem' root) are skipped.
    CREATE TABLE fts_pending (id INTEGER PRIMARY KEY);
    CREATE VIRTUAL TABLE items_fts USING fts5 (text, content='', contentless_delete=1);
    CREATE TRIGGER items_fts_insert AFTER INSERT ON items
        WHEN NOT (new.ns = 'tieredmem' OR substr(new.ns, 1, 10) = 'tieredmem' || char(31))
        BEGIN INSERT INTO fts_pending (id) SELECT new.id
              WHERE NOT EXISTS (SELECT 1 FROM fts_pending WHERE id = new.id); END;
    CREATE TRIGGER items_fts_update AFTER UPDATE OF value ON items
        WHEN NOT (new.ns = 'tieredmem' OR substr(new.ns, 1, 10) = 'tieredmem' || char(31))
        BEGIN INSERT INTO fts_pending (id) SELECT new.id
              WHERE NOT EXISTS (SELECT 1 FROM fts_pending WHERE id = new.id); END;
    CREATE TRIGGER items_fts_delete AFTER DELETE ON items
        WHEN NOT (old.ns = 'tieredmem' OR substr(old.ns, 1, 10) = 'tieredmem' || char(31))
        BEGIN INSERT INTO fts_pending (id) SELECT old.id
              WHERE NOT EXISTS (SELECT 1 FROM fts_pending WHERE id = old.id); END;
    """,
)

FORMAT_VERSION = len(MIGRATIONS)
