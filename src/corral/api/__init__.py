"""Resource schemas, the kind registry and the errors every layer shares.

This package imports nothing else of corral's; every other layer builds on it.
"""

from corral.api.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from corral.api.objects import API_GROUP, API_VERSION, Object, ObjectKey, object_key
from corral.api.registry import KindInfo, all_kinds, kind_for_plural, lookup_kind

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Conflict",
    "FieldError",
    "Forbidden",
    "Gone",
    "Invalid",
    "KindInfo",
    "NotFound",
    "Object",
    "ObjectKey",
    "PayloadTooLarge",
    "Unauthorized",
    "all_kinds",
    "kind_for_plural",
    "lookup_kind",
    "object_key",
]
