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
    # 1: items (one b-tree keyed by namespace and key), expiry index, settings, and the
    #    tables of the full-text index, which stays empty until the first text search.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE items (
        ns         TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      BLOB NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        ttl        REAL,  -- seconds; reads that refresh TTLs set expires_at = now + ttl
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID;
    CREATE INDEX items_expires ON items (expires_at) WHERE expires_at IS NOT NULL;
    -- Full-text documents: FTS5 needs integer rowids, items has none.  'stale' rows are
    -- (re)indexed lazily (by a search or maintenance), never inside a put.
    CREATE TABLE fts_docs (
        id    INTEGER PRIMARY KEY,
        ns    TEXT NOT NULL,
        key   TEXT NOT NULL,
        stale INTEGER NOT NULL DEFAULT 1,
        UNIQUE (ns, key)
    );
    CREATE INDEX fts_docs_stale ON fts_docs (id) WHERE stale = 1;
    -- 'ns' holds the namespace labels as words, so a query is narrowed to a namespace
    -- prefix inside the index instead of ranking every match in the store.
    CREATE VIRTUAL TABLE items_fts USING fts5 (ns, text, content='', contentless_delete=1);
    """,
    # 2: zstd dictionaries trained on the store's values (see tieredmem.codec).  Frames
    #    name theirs by id; rows are never changed or deleted while a frame may use them.
    """
    CREATE TABLE zstd_dicts (
        id         INTEGER PRIMARY KEY,
        data       BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 3: the number of items, kept by triggers in the transaction of every write (any
    #    connection, any statement: put, delete, range delete, expiry), so stats() reads
    #    one row instead of counting the table.  The upgrade counts once.
    """
    CREATE TABLE counts (
        name TEXT PRIMARY KEY,
        n    INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO counts (name, n) VALUES ('items', (SELECT count(*) FROM items));
    CREATE TRIGGER items_count_insert AFTER INSERT ON items
    BEGIN UPDATE counts SET n = n + 1 WHERE name = 'items'; END;
    CREATE TRIGGER items_count_delete AFTER DELETE ON items
    BEGIN UPDATE counts SET n = n - 1 WHERE name = 'items'; END;
    -- Declared field indexes (tieredmem.open(..., index=[...]), listed in meta 'index'):
    -- a row per item and declared field whose value is a number, a string or a bool, so
    -- filters on them are answered in SQL.  'value' has no type: SQLite keeps each as is.
    CREATE TABLE fields (
        field TEXT NOT NULL,
        ns    TEXT NOT NULL,
        value NOT NULL,
        key   TEXT NOT NULL,
        PRIMARY KEY (field, ns, value, key)
    ) WITHOUT ROWID;
    CREATE INDEX fields_item ON fields (ns, key, field);
    """,
)

FORMAT_VERSION = len(MIGRATIONS)

_NOT_INTERNAL = "NOT ({row}.ns = 'tieredmem' OR substr({row}.ns, 1, 10) = 'tieredmem' || char(31))"
_MARK = (
    "BEGIN "
    "INSERT INTO fts_docs (ns, key) SELECT {row}.ns, {row}.key WHERE NOT EXISTS "
    "(SELECT 1 FROM fts_docs WHERE ns = {row}.ns AND key = {row}.key); "
    "UPDATE fts_docs SET stale = 1 WHERE ns = {row}.ns AND key = {row}.key AND stale = 0; "
    "END"
)
# Created by the first full-text search, so a store that never searches text never pays
# for them.  No OR IGNORE inside: a trigger's conflict policy is overridden by the outer
# statement's (an UPSERT's).  Internal namespaces (histories, states) are skipped.
FTS_TRIGGERS: tuple[str, ...] = tuple(
    f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON items "
    f"WHEN {_NOT_INTERNAL.format(row=row)} {_MARK.format(row=row)}"
    for name, event, row in (
        ("items_fts_insert", "INSERT", "new"),
        ("items_fts_update", "UPDATE OF value", "new"),
        ("items_fts_delete", "DELETE", "old"),
    )
)
#: Created when a field index is first declared: a deleted item takes its field rows along
#: (whatever deletes it: a delete, a range delete, expiry, another program).
FIELDS_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS items_fields_delete AFTER DELETE ON items "
    f"WHEN {_NOT_INTERNAL.format(row='old')} "
    "BEGIN DELETE FROM fields WHERE ns = old.ns AND key = old.key; END"
)
#: Created when field indexes are declared (by any handle, files from before it included):
#: an equality on a declared field seeks ``(field, value)`` and reads its items in
#: (ns, key) order, however many other values the namespace holds.
FIELDS_VALUE_INDEX = "CREATE INDEX IF NOT EXISTS fields_value ON fields (field, value, ns, key)"
#: Queue every existing (non-internal) item for indexing when full-text search is enabled.
FTS_BACKFILL = (
    "INSERT INTO fts_docs (ns, key) SELECT ns, key FROM items "
    f"WHERE {_NOT_INTERNAL.format(row='items')} "
    "AND NOT EXISTS (SELECT 1 FROM fts_docs d WHERE d.ns = items.ns AND d.key = items.key)"
)
