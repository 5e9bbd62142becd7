"""Rendering an Endpoint for a Kubernetes cluster: Deployments plus DRA objects.

Behind ``corral render kubernetes`` (DESIGN.md §6). Corral's device objects already follow
``resource.k8s.io/v1``, so the cluster gets the same request the local scheduler would place:
per Endpoint Model, one ``ResourceClaimTemplate`` (one device of the class, with the replica's
sized ``memory``/``cores`` as a capacity request) referenced from the Deployment's pod spec
(``resourceClaims``) and its server container (``resources.claims``), so each pod gets its own
claim; and each DeviceClass used (its CEL selectors copied, or ``device.driver == "<name>"``
when corral has no such class and the name is a driver's domain). On a cluster the DRA driver
(e.g. NVIDIA's, through CDI) makes the allocated GPUs visible to the container, so no
``CUDA_VISIBLE_DEVICES`` is rendered; CPU threads come from ``cores``.

Model files are read from a volume (``models_claim``, a PersistentVolumeClaim) mounted at
``/models``: the Model's file name under it. Pure: objects in, objects out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from corral.devices.sizing import CLAIM_REQUEST, ReplicaNeeds

RESOURCE_API = "resource.k8s.io/v1"
PORT = 8080
MODELS_DIR = "/models"
POD_CLAIM = "devices"

DEFAULT_IMAGES = {
    "llamacpp": "ghcr.io/abetlen/llama-cpp-python:latest",
    "vllm": "vllm/vllm-openai:latest",
}
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


class RenderError(ValueError):
    """The Endpoint cannot be rendered (an openai upstream, an unknown class, no model file)."""


@dataclass(frozen=True)
class ModelPlacement:
    """One Model of the Endpoint: its file name on the models volume and its replica's needs."""

    model: str
    file_name: str
    needs: ReplicaNeeds | None


def dns_name(*parts: str) -> str:
    """A DNS-1123 label from ``parts`` (lower-case, '-' joined, at most 63 characters)."""
    text = _DNS_LABEL.sub("-", "-".join(parts).lower()).strip("-")
    if not text:
        raise RenderError(f"cannot make a Kubernetes name from {parts!r}")
    return text[:63].rstrip("-")


def render_endpoint(
    endpoint: Mapping[str, Any],
    placements: list[ModelPlacement],
    device_classes: Mapping[str, Mapping[str, Any]],
    *,
    image: str | None = None,
    models_claim: str = "corral-models",
) -> list[dict[str, Any]]:
    """DeviceClasses, ResourceClaimTemplates and Deployments serving ``endpoint`` (in order)."""
    meta = endpoint.get("metadata") or {}
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "default")
    spec = endpoint.get("spec") or {}
    runtime = spec.get("runtime") or {}
    runtime_type = str(runtime.get("type") or "llamacpp")
    if runtime_type not in DEFAULT_IMAGES:
        raise RenderError(
            f"Endpoint {namespace}/{name}: runtime {runtime_type!r} runs outside the cluster; "
            f"only {', '.join(sorted(DEFAULT_IMAGES))} render"
        )
    classes: dict[str, dict[str, Any]] = {}
    templates: list[dict[str, Any]] = []
    deployments: list[dict[str, Any]] = []
    for placement in placements:
        base = dns_name(name, placement.model)
        pod_claims: list[dict[str, Any]] = []
        if placement.needs is not None:
            class_name = placement.needs.class_name
            classes.setdefault(class_name, _device_class(class_name, device_classes))
            templates.append(_claim_template(base, namespace, placement.needs))
            pod_claims = [{"name": POD_CLAIM, "resourceClaimTemplateName": base}]
        deployments.append(
            _deployment(
                base,
                namespace,
                endpoint=name,
                placement=placement,
                runtime=runtime_type,
                options=runtime.get("options") or {},
                replicas=int(spec.get("replicas", 1)),
                image=image or DEFAULT_IMAGES[runtime_type],
                models_claim=models_claim,
                pod_claims=pod_claims,
            )
        )
    return [*classes.values(), *templates, *deployments]


def _device_class(name: str, known: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    source = known.get(name)
    if source is not None:
        selectors = [
            {"cel": {"expression": str((s.get("cel") or {}).get("expression"))}}
            for s in (source.get("spec") or {}).get("selectors") or []
        ]
    elif "." in name:
        selectors = [{"cel": {"expression": f'device.driver == "{name}"'}}]
    else:
        raise RenderError(
            f"DeviceClass {name!r} is unknown: pass its object (-f) or name a driver domain"
        )
    return {
        "apiVersion": RESOURCE_API,
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": selectors},
    }


def _claim_template(name: str, namespace: str, needs: ReplicaNeeds) -> dict[str, Any]:
    exactly: dict[str, Any] = {
        "deviceClassName": needs.class_name,
        "allocationMode": "ExactCount",
        "count": 1,
    }
    requests = needs.capacity_requests()
    if requests:
        exactly["capacity"] = {"requests": requests}
    return {
        "apiVersion": RESOURCE_API,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"spec": {"devices": {"requests": [{"name": CLAIM_REQUEST, "exactly": exactly}]}}},
    }


def _server_args(
    runtime: str, placement: ModelPlacement, options: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """(command, args) of the model server container, options as the local runtimes spell them."""
    path = f"{MODELS_DIR}/{placement.file_name}"
    merged: dict[str, Any] = dict(options)
    if runtime == "llamacpp":
        if placement.needs is not None and placement.needs.cores is not None:
            merged.setdefault("n_threads", placement.needs.cores)
        if placement.needs is not None and placement.needs.class_name.startswith("gpu."):
            merged.setdefault("n_gpu_layers", -1)
        args = ["--model", path, "--host", "0.0.0.0", "--port", str(PORT)]
        args += ["--model_alias", placement.model]
        for key, value in merged.items():
            rendered = ("true" if value else "false") if isinstance(value, bool) else str(value)
            args += [f"--{key.replace('-', '_')}", rendered]
        return ["python3", "-m", "llama_cpp.server"], args
    args = [path, "--served-model-name", placement.model, "--host", "0.0.0.0"]
    args += ["--port", str(PORT)]
    for key, value in merged.items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            args.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            args += [f"--{flag}", str(value)]
    return ["vllm", "serve"], args


def _deployment(
    name: str,
    namespace: str,
    *,
    endpoint: str,
    placement: ModelPlacement,
    runtime: str,
    options: Mapping[str, Any],
    replicas: int,
    image: str,
    models_claim: str,
    pod_claims: list[dict[str, Any]],
) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "corral-model-server",
        "app.kubernetes.io/managed-by": "corral",
        "corral.dev/endpoint": dns_name(endpoint),
        "corral.dev/model": dns_name(placement.model),
    }
    command, args = _server_args(runtime, placement, options)
    container: dict[str, Any] = {
        "name": "server",
        "image": image,
        "command": command,
        "args": args,
        "ports": [{"name": "http", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/v1/models", "port": "http"}},
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR, "readOnly": True}],
    }
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {
                "name": "models",
                "persistentVolumeClaim": {"claimName": models_claim, "readOnly": True},
            }
        ],
    }
    if pod_claims:
        container["resources"] = {"claims": [{"name": POD_CLAIM}]}
        pod["resourceClaims"] = pod_claims
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }
