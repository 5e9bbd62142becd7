"""PostgreSQL statements and constants for :class:`~corral.store.postgres.PostgresStore`.

Kept apart from the store's control flow so each reads on its own: here is what is stored and
how one round trip does each step; there is when, under which lock, and who gets woken.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from corral.api.objects import Object, ObjectKey
from corral.store.paging import ListQuery

WRITE_LOCK = 0x636F7272616C01  # "corral" + 1: every write transaction holds it until commit
SCHEMA_LOCK = 0x636F7272616C02
CHANNEL = "corral_events"
LISTENER_APPLICATION_NAME = "corral-watch"
EVENT_BATCH = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS corral_counter (
    id integer PRIMARY KEY CHECK (id = 0), rv bigint NOT NULL
);
INSERT INTO corral_counter (id, rv) VALUES (0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS corral_objects (
    kind text COLLATE "C" NOT NULL, namespace text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL, uid text NOT NULL, rv bigint NOT NULL, data text NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS corral_events (
    rv bigint PRIMARY KEY, kind text NOT NULL, namespace text NOT NULL, name text NOT NULL,
    type text NOT NULL, data text NOT NULL, prev_labels text
);
CREATE TABLE IF NOT EXISTS corral_history (
    id bigserial PRIMARY KEY, kind text NOT NULL, namespace text NOT NULL, name text NOT NULL,
    generation bigint NOT NULL, rv bigint NOT NULL, action text NOT NULL, actor text NOT NULL,
    ts text NOT NULL, spec text NOT NULL, labels text NOT NULL, diff text NOT NULL
);
CREATE INDEX IF NOT EXISTS corral_history_by_object ON corral_history (kind, namespace, name, rv);
"""

# One statement, so one snapshot: the head, the oldest retained event and the rows agree.
READ_EVENTS = """
SELECT c.rv, (SELECT min(rv) FROM corral_events), e.rv, e.type, e.data, e.prev_labels
FROM corral_counter c
LEFT JOIN LATERAL (
    SELECT rv, type, data, prev_labels FROM corral_events
    WHERE rv > $1 AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR namespace = $3)
    ORDER BY rv LIMIT $4
) e ON true
WHERE c.id = 0
ORDER BY e.rv
"""
# One round trip per change: the object row, its event and (when the spec changed) history.
RECORD_CHANGE = """
WITH upserted AS (
    INSERT INTO corral_objects (kind, namespace, name, uid, rv, data)
    SELECT $1::text, $2::text, $3::text, $4::text, $5::bigint, $6::text WHERE NOT $7::boolean
    ON CONFLICT (kind, namespace, name)
    DO UPDATE SET uid = excluded.uid, rv = excluded.rv, data = excluded.data
), removed AS (
    DELETE FROM corral_objects WHERE $7::boolean AND kind = $1 AND namespace = $2 AND name = $3
), event AS (
    INSERT INTO corral_events (rv, kind, namespace, name, type, data, prev_labels)
    VALUES ($5, $1, $2, $3, $8::text, $6, $9::text)
)
INSERT INTO corral_history
    (kind, namespace, name, generation, rv, action, actor, ts, spec, labels, diff)
SELECT $1, $2, $3, $10::bigint, $5, $11::text, $12::text, $13::text, $14::text, $15::text,
    $16::text
WHERE $10::bigint IS NOT NULL
"""
HEAD_AND_OBJECT = """
SELECT c.rv, (SELECT data FROM corral_objects WHERE kind = $1 AND namespace = $2 AND name = $3)
FROM corral_counter c WHERE c.id = 0
"""


async def load(connection: Any, key: ObjectKey) -> Object | None:
    data = await connection.fetchval(
        "SELECT data FROM corral_objects WHERE kind = $1 AND namespace = $2 AND name = $3", *key
    )
    return None if data is None else orjson.loads(data)


def list_statement(query: ListQuery, cursor: tuple[str, str] | None) -> list[Any]:
    clauses = ["kind = $1"]
    args: list[Any] = [query.kind]
    if query.namespace is not None:
        args.append(query.namespace)
        clauses.append(f"namespace = ${len(args)}")
    if cursor is not None:
        args.extend(cursor)
        clauses.append(f"(namespace, name) > (${len(args) - 1}, ${len(args)})")
    limit = "" if query.batch_size is None else f" LIMIT {query.batch_size}"
    sql = (
        f"SELECT namespace, name, data FROM corral_objects WHERE {' AND '.join(clauses)} "
        f"ORDER BY namespace, name{limit}"
    )
    return [sql, *args]


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
