"""The API server: corral's resources over HTTP, Kubernetes-style, in front of a Store.

``create_app(store, admin_token=...)`` is an ASGI app (Starlette) serving
``/apis/corral.dev/v1alpha1/...`` (CRUD, merge-patch, status, history, watch and the batch
``/apply``), ``/openapi/v3``, ``/metrics``, ``/healthz`` and ``/readyz``. Callers that embed it
(``corral up``, ``corral serve``) also call :func:`load_or_create_admin_token` and
:func:`ensure_builtin_namespaces` once at start-up. A kind's JSON Schema alone is
``corral.api.schema.kind_json_schema``.
"""

from corral.apiserver.app import create_app
from corral.apiserver.auth import TokenFileError, load_or_create_admin_token
from corral.apiserver.namespaces import ensure_builtin_namespaces
from corral.apiserver.openapi import openapi_document

__all__ = [
    "TokenFileError",
    "create_app",
    "ensure_builtin_namespaces",
    "load_or_create_admin_token",
    "openapi_document",
]
