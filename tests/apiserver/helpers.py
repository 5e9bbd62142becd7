"""Objects and paths the API server tests share."""

from __future__ import annotations

from typing import Any

TOKEN = "test-admin-token"
API = "/apis/corral.dev/v1alpha1"


def model(name: str, namespace: str | None = "default", **metadata: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, **metadata},
        "spec": {"source": f"file:///models/{name}.gguf"},
    }
    if namespace is not None:
        obj["metadata"]["namespace"] = namespace
    return obj


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "corral.dev/v1alpha1", "kind": "Namespace", "metadata": {"name": name}}


def models_path(namespace: str = "default", name: str = "") -> str:
    path = f"{API}/namespaces/{namespace}/models"
    return f"{path}/{name}" if name else path
