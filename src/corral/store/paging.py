"""List paging: continue tokens and the page filler both backends feed with rows.

A backend reads rows ordered by (namespace, name) after a cursor, in batches, and feeds them to a
:class:`Pager` until it is full; the pager filters by label selector and decides whether another
page exists (it looks one match ahead, so the last page never carries a token).

A continue token is opaque to callers: base64 of the list it belongs to (kind, namespace,
selector), the last key returned, and the list's resourceVersion. Every page of one list reports
that first resourceVersion, as Kubernetes does, so watching from it after the last page misses
nothing that changed while paging.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from corral.api.errors import BadRequest
from corral.api.objects import Object
from corral.store.protocol import ListResult
from corral.store.selectors import LabelSelector, selector_or_none
from corral.store.semantics import labels_of

_TOKEN_VERSION = 1
BATCH_WITH_SELECTOR = 500


@dataclass(frozen=True)
class ListQuery:
    """A checked list request: where to resume and which resourceVersion the list reports."""

    kind: str
    namespace: str | None
    selector_text: str
    selector: LabelSelector | None
    limit: int | None
    after: tuple[str, str] | None
    token_rv: int | None

    @property
    def batch_size(self) -> int | None:
        """Rows to read per query: None reads everything (no limit)."""
        if self.limit is None:
            return None
        # One row past the limit tells whether another page exists; with a selector some rows
        # are filtered out, so read more per round trip.
        return max(self.limit + 1, BATCH_WITH_SELECTOR) if self.selector else self.limit + 1


def parse_list_query(
    kind: str,
    namespace: str | None,
    label_selector: str | None,
    limit: int | None,
    continue_token: str | None,
) -> ListQuery:
    """Validate list arguments; raise BadRequest for a bad limit, selector or continue token."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise BadRequest(f"limit must be a non-negative integer, got {limit!r}")
    selector = selector_or_none(label_selector)
    after = None
    token_rv = None
    if continue_token:
        after, token_rv = _decode(continue_token, kind, namespace, label_selector or "")
    return ListQuery(
        kind, namespace, label_selector or "", selector, limit or None, after, token_rv
    )


def check_token_rv(query: ListQuery, head: int, oldest_retained: int | None) -> int:
    """The resourceVersion a page reports; a token from another store state is refused."""
    if query.token_rv is None:
        return head
    if query.token_rv > head:
        raise BadRequest(
            f"continue token is for resourceVersion {query.token_rv}, newer than this store's "
            f"{head}: it comes from another store; list again without it"
        )
    if oldest_retained is not None and query.token_rv < oldest_retained - 1:
        raise BadRequest(
            f"continue token is for resourceVersion {query.token_rv}, older than the retained "
            "history: the list expired; list again without it"
        )
    return query.token_rv


class Pager:
    """Collects one page from rows fed in (namespace, name) order."""

    def __init__(self, query: ListQuery) -> None:
        self.query = query
        self.items: list[Object] = []
        self.more = False
        self.cursor = query.after

    def feed(self, rows: Iterable[tuple[str, str, bytes]]) -> bool:
        """Take a batch; True once the page is full (and whether more exist is known)."""
        limit = self.query.limit
        for namespace, name, data in rows:
            self.cursor = (namespace, name)
            obj: Object = orjson.loads(data)
            if self.query.selector is not None and not self.query.selector.matches(labels_of(obj)):
                continue
            if limit is not None and len(self.items) == limit:
                self.more = True
                return True
            self.items.append(obj)
        return False

    def result(self, resource_version: int) -> ListResult:
        token = None
        if self.more:
            last = self.items[-1]["metadata"]
            token = _encode(
                self.query, (str(last.get("namespace") or ""), last["name"]), resource_version
            )
        return ListResult(self.items, resource_version, token)


def _encode(query: ListQuery, after: tuple[str, str], rv: int) -> str:
    payload = [_TOKEN_VERSION, query.kind, query.namespace, query.selector_text, *after, rv]
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def _decode(
    token: str, kind: str, namespace: str | None, selector_text: str
) -> tuple[tuple[str, str], int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, token_kind, token_namespace, token_selector, after_ns, after_name, rv = (
            orjson.loads(raw)
        )
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise BadRequest(
            f"continue token {token[:40]!r} is garbled: pass back the token a list returned, "
            "unchanged"
        ) from None
    if (
        version != _TOKEN_VERSION
        or not isinstance(after_ns, str)
        or not isinstance(after_name, str)
        or not isinstance(rv, int)
    ):
        raise BadRequest(f"continue token {token[:40]!r} is garbled or from another version")
    if (token_kind, token_namespace, token_selector) != (kind, namespace, selector_text):
        raise BadRequest(
            "continue token belongs to another list "
            f"(kind {token_kind!r}, namespace {token_namespace!r}, selector {token_selector!r}); "
            "page with the same arguments that produced it"
        )
    return (after_ns, after_name), rv
