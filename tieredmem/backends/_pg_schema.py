"""The PostgreSQL layout: an append-only list of migrations over tables with a common prefix.

Every table is ``<schema>.<prefix><name>``; ``<prefix>meta`` records ``format`` =
``tieredmem`` and ``format_version`` (the number of migrations applied).  Never edit a
migration that has shipped: append a new one.  Opening refuses, without changing
anything, a schema where one of our table names is taken by something that is not a
tieredmem store, or a store of a newer format.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import NotAStoreError, SchemaVersionError

__all__ = ()

#: ``<prefix><name>`` of every table the migrations create (checked before creating any).
TABLES = ("meta", "items", "dicts", "version")

#: Each migration is a list of statements; ``{s}`` is the quoted schema and ``{p}`` the
#: table prefix (both validated identifiers).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: items keyed by (namespace, key) in code-point order (COLLATE "C": the order the
    #    backend protocol promises, whatever the database's locale); the expiry index; the
    #    full-text document and the value as jsonb for filters (both NULL until indexed:
    #    a write never pays for them; internal namespaces are never indexed); zstd
    #    dictionaries; the coherence version row
    #    (a counter, the random id of the latest change and that of the one before).
    (
        'CREATE TABLE {s}."{p}meta" (key text PRIMARY KEY, value text NOT NULL)',
        'CREATE TABLE {s}."{p}items" ('
        ' ns text COLLATE "C" NOT NULL,'
        ' key text COLLATE "C" NOT NULL,'
        " value bytea NOT NULL,"
        " created_at float8 NOT NULL,"
        " updated_at float8 NOT NULL,"
        " expires_at float8,"
        " ttl float8,"
        " tsv tsvector,"
        " doc jsonb,"
        " PRIMARY KEY (ns, key))",
        'CREATE INDEX "{p}items_expires" ON {s}."{p}items" (expires_at) '
        "WHERE expires_at IS NOT NULL",
        'CREATE INDEX "{p}items_tsv" ON {s}."{p}items" USING gin (tsv)',
        'CREATE INDEX "{p}items_doc" ON {s}."{p}items" USING gin (doc jsonb_path_ops)',
        'CREATE INDEX "{p}items_unindexed" ON {s}."{p}items" (ns, key) WHERE {pending}',
        'CREATE TABLE {s}."{p}dicts" ('
        " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " data bytea NOT NULL, created_at float8 NOT NULL)",
        'CREATE TABLE {s}."{p}version" ('
        " id int PRIMARY KEY CHECK (id = 1), v bigint NOT NULL, vid bigint NOT NULL,"
        " pvid bigint NOT NULL)",
        'INSERT INTO {s}."{p}version" (id, v, vid, pvid) VALUES (1, 0, 0, 0)',
    ),
    # 2: the number of items, kept on the version row by every write batch (in the same
    #    statement that bumps the version, so in the same transaction as the rows it
    #    counts): stats() reads one row whatever the size of the table.  Counted once
    #    here, with writers held off (SHARE mode) so the count is exact.
    (
        'LOCK TABLE {s}."{p}items" IN SHARE MODE',
        'ALTER TABLE {s}."{p}version" ADD COLUMN n bigint NOT NULL DEFAULT 0',
        'UPDATE {s}."{p}version" SET n = (SELECT count(*) FROM {s}."{p}items") WHERE id = 1',
    ),
)

FORMAT_VERSION = len(MIGRATIONS)

#: Rows waiting for the full-text index (internal namespaces are never indexed).  The
#: searches use this very text, so the planner matches it with the partial index.
PENDING = "tsv IS NULL AND ns <> 'tieredmem' AND left(ns, 10) <> E'tieredmem\\x1f'"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def identifier(name: str, what: str, *, empty: bool = False) -> str:
    """*name* if it is a plain SQL identifier (letters, digits, ``_``; at most 40)."""
    if (empty and name == "") or _IDENT.fullmatch(name):
        return name
    raise ValueError(
        f"{what} must be letters, digits and '_' (not starting with a digit, at most 40), "
        f"not {name!r}"
    )


def statements(number: int, schema: str, prefix: str) -> tuple[str, ...]:
    """Migration *number* (0-based) for ``schema``/``prefix``."""
    return tuple(
        sql.format(s=f'"{schema}"', p=prefix, pending=PENDING) for sql in MIGRATIONS[number]
    )


def existing_tables(conn: Any, schema: str, prefix: str) -> set[str]:
    """Which of our table names exist in *schema*."""
    return {
        name
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s)",
            (schema, [prefix + t for t in TABLES]),
        )
    }


def vet(conn: Any, schema: str, prefix: str, where: str) -> int | None:
    """The format version of the store in *schema* under *prefix* (``None``: none of our
    tables exist); reads only.

    :raises NotAStoreError: our table names are taken by something else.
    :raises SchemaVersionError: the store has a newer format.
    """
    tables = f"{schema}.{prefix}*"
    found = existing_tables(conn, schema, prefix)
    if not found:
        return None
    if prefix + "meta" not in found:
        raise NotAStoreError(
            f"{where}: tables named {tables} exist but are not a tieredmem store; "
            "choose another ?table_prefix= or ?schema="
        )
    meta = dict(conn.execute(f'SELECT key, value FROM "{schema}"."{prefix}meta"').fetchall())
    if meta.get("format") != "tieredmem":
        raise NotAStoreError(
            f"{where}: {tables} is not a tieredmem store; choose another ?table_prefix= or ?schema="
        )
    version = int(meta.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise SchemaVersionError(
            f"{where}: {tables} has format version {version}, newer than this "
            f"tieredmem understands ({FORMAT_VERSION}); upgrade tieredmem to open it"
        )
    return version


def vet_readonly(conn: Any, schema: str, prefix: str, where: str) -> None:
    """Refuse, for ``readonly=True``, a store that is not there or needs upgrading (both
    would need writes); changes nothing.

    :raises NotAStoreError: there is no tieredmem store, or something else holds our names.
    :raises SchemaVersionError: the store has an older or newer format.
    """
    version = vet(conn, schema, prefix, where)
    if version is None:
        raise NotAStoreError(
            f"{where}: no tieredmem store in {schema}.{prefix}* (no such tables); "
            "a read-only open creates none: check the database, ?schema= and ?table_prefix="
        )
    if version < FORMAT_VERSION:
        raise SchemaVersionError(
            f"{where}: {schema}.{prefix}* has format version {version}, older than this "
            f"tieredmem writes ({FORMAT_VERSION}); open it once without readonly to upgrade "
            "it, then read it with readonly=True"
        )


def migrate(conn: Any, schema: str, prefix: str, where: str) -> list[int]:
    """Vet and bring the store's tables to :data:`FORMAT_VERSION`, in one transaction
    under an advisory lock (concurrent first opens wait for each other); return the
    numbers of the migrations applied.  Nothing is changed when refused.

    :raises NotAStoreError: our table names are taken by something else.
    :raises SchemaVersionError: the store has a newer format.
    """
    meta_table = f'"{schema}"."{prefix}meta"'
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tieredmem {schema}.{prefix}*",)
        )
        version = vet(conn, schema, prefix, where) or 0
        if version == FORMAT_VERSION:
            return []
        if schema != "public":
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for number in range(version, FORMAT_VERSION):
            for sql in statements(number, schema, prefix):
                conn.execute(sql)
        conn.execute(
            f"INSERT INTO {meta_table} (key, value) VALUES ('format', 'tieredmem'), "
            "('format_version', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(FORMAT_VERSION),),
        )
    return list(range(version + 1, FORMAT_VERSION + 1))
