"""The Kubernetes object shape every corral resource has.

Objects travel between layers as plain JSON dicts (``Object``), like controller-runtime's
unstructured objects: the store and the watch path never pay for schema parsing. The typed
view of a kind (its pydantic model) is applied at the edges: validation on the way in, and
``KindInfo.parse`` where a controller wants typed access to a spec.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

API_GROUP = "corral.dev"
API_VERSION = f"{API_GROUP}/v1alpha1"

Object = dict[str, Any]
"""A resource as JSON: ``{apiVersion, kind, metadata, spec, status}``."""

MAX_OBJECT_BYTES = 1024 * 1024
"""Objects larger than 1 MiB (serialised) are refused, as etcd and Kubernetes do."""

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ObjectKey(NamedTuple):
    """Identifies one object; ``namespace`` is ``""`` for cluster-scoped kinds."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return (
            f"{self.kind}/{self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind}/{self.name}"
        )


def object_key(obj: Object) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey(
        str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", ""))
    )


def now_rfc3339() -> str:
    """UTC timestamp with microseconds, the format every timestamp field uses."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def name_problem(name: str, *, max_length: int = 253) -> str | None:
    """Why ``name`` is not a valid DNS-1123 subdomain name, or None when it is."""
    if not name:
        return "must not be empty"
    if len(name) > max_length:
        return f"must be at most {max_length} characters (got {len(name)})"
    if not DNS1123_SUBDOMAIN.match(name):
        return (
            f"{name!r} is not a valid name: use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (DNS-1123)"
        )
    return None


def label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return f"label key {key!r}: prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"label key {key!r}: name must be 1-63 alphanumerics, '-', '_' or '.'"
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return f"label value {value!r}: must be at most 63 alphanumerics, '-', '_' or '.'"
    return None


class OwnerReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apiVersion: str = API_VERSION
    kind: str
    name: str
    uid: str
    controller: bool = False
    blockOwnerDeletion: bool = False


class ObjectMeta(BaseModel):
    """What users may write in ``metadata``; server-owned fields are accepted and then ignored."""

    model_config = ConfigDict(extra="forbid")

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    ownerReferences: list[OwnerReference] = Field(default_factory=list)
    # Server-owned: present on objects read back from the server and round-tripped.
    uid: str | None = None
    generation: int | None = None
    resourceVersion: str | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None


class Condition(BaseModel):
    """A controller's observation, Kubernetes ``metav1.Condition`` shaped."""

    model_config = ConfigDict(extra="forbid")

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    lastTransitionTime: str = ""
    observedGeneration: int = 0


class ResourceStatus(BaseModel):
    """The status every kind has; kinds extend it with their own observed fields."""

    model_config = ConfigDict(extra="allow")

    observedGeneration: int = 0
    conditions: list[Condition] = Field(default_factory=list)
