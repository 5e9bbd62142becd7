"""``corral render kubernetes``: an Endpoint as Kubernetes Deployments and DRA objects.

Reads the Endpoint, its Models and DeviceClasses from ``-f`` manifests (offline) or from the
server (``ENDPOINT`` by name), sizes each Model's replica the way the local Endpoint controller
does (:mod:`corral.models.status_sizing`, :mod:`corral.devices.sizing`), and prints the objects
:func:`corral.devices.kubernetes.render_endpoint` builds as one YAML stream (or a JSON List),
ready for ``kubectl apply -f -``. A Model's header facts come from its ``status.metadata``, or,
for a manifest Model with a local ``file://`` source and no status, from the file's header.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from corral.cli.remote import Remote, remote_options

if TYPE_CHECKING:
    from corral.devices.kubernetes import ModelPlacement

Object = dict[str, Any]


@click.group()
def render() -> None:
    """Render corral objects for other platforms."""


@render.command()
@click.argument("endpoint", required=False)
@click.option(
    "-f",
    "--filename",
    "sources",
    multiple=True,
    metavar="PATH",
    help="manifest file or directory ('-' for stdin) holding the Endpoint, Models, DeviceClasses",
)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--image", metavar="IMAGE", help="model server image [default: per runtime]")
@click.option(
    "--models-claim",
    default="corral-models",
    show_default=True,
    metavar="PVC",
    help="PersistentVolumeClaim holding the model files (mounted at /models)",
)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml")
@remote_options
def kubernetes(
    endpoint: str | None,
    sources: tuple[str, ...],
    namespace: str,
    image: str | None,
    models_claim: str,
    output: str,
    remote: Remote,
) -> None:
    """Print Deployments plus resource.k8s.io/v1 DeviceClass and ResourceClaimTemplate objects.

    With -f, every Endpoint in the manifests is rendered (or only ENDPOINT); without, ENDPOINT
    is read from the server with its Models and DeviceClasses.
    """
    import orjson
    import yaml

    from corral.devices.kubernetes import RenderError, render_endpoint

    if sources:
        objects = _from_manifests(sources, namespace)
    elif endpoint:
        objects = _from_server(remote, endpoint, namespace)
    else:
        raise click.UsageError("give -f manifests or the name of an Endpoint on the server")
    endpoints = [
        o
        for o in objects
        if o.get("kind") == "Endpoint"
        and (endpoint is None or o["metadata"].get("name") == endpoint)
    ]
    if not endpoints:
        raise click.UsageError(f"no Endpoint {endpoint or ''} in {', '.join(sources)}".strip())
    classes = {str(o["metadata"].get("name")): o for o in objects if o.get("kind") == "DeviceClass"}
    rendered: list[Object] = []
    for obj in endpoints:
        try:
            rendered += render_endpoint(
                obj, placements(obj, objects), classes, image=image, models_claim=models_claim
            )
        except RenderError as exc:
            raise click.ClickException(str(exc)) from None
    if output == "json":
        click.echo(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": rendered}).decode())
    else:
        click.echo(yaml.safe_dump_all(rendered, sort_keys=False).rstrip("\n"))


def placements(endpoint: Object, objects: Sequence[Object]) -> list[ModelPlacement]:
    """Each Model of ``endpoint``: file name and sized needs (raises ``click.ClickException``)."""
    from corral.api.kinds.endpoint import ENDPOINT, EndpointSpec
    from corral.devices.kubernetes import ModelPlacement
    from corral.devices.sizing import Footprint, SizingError, replica_needs
    from corral.models.status_sizing import replica_estimate

    meta = endpoint["metadata"]
    where = f"Endpoint {meta.get('namespace', 'default')}/{meta.get('name')}"
    try:
        spec: EndpointSpec = ENDPOINT.parse_spec(endpoint)
    except ValueError as exc:
        raise click.ClickException(f"{where}: {exc}") from None
    namespace = meta.get("namespace") or "default"
    models = {
        str(o["metadata"].get("name")): o
        for o in objects
        if o.get("kind") == "Model" and (o["metadata"].get("namespace") or "default") == namespace
    }
    result = []
    for ref in spec.models:
        model = models.get(ref.model)
        if model is None:
            raise click.ClickException(f"{where}: Model {ref.model} is not in the input")
        source = str((model.get("spec") or {}).get("source") or "")
        needs = None
        if spec.devices is not None:
            try:
                estimate = replica_estimate(
                    _model_metadata(model, source), spec.runtime.type, spec.runtime.options
                )
                footprint = (
                    Footprint(estimate.weights, estimate.kv_cache, estimate.overhead)
                    if estimate is not None
                    else None
                )
                needs = replica_needs(spec.devices.model_dump(exclude_none=True), footprint)
            except (SizingError, ValueError) as exc:
                raise click.ClickException(f"{where}, Model {ref.model}: {exc}") from None
        file_name = source.rstrip("/").rsplit("/", 1)[-1] or ref.model
        result.append(ModelPlacement(model=ref.model, file_name=file_name, needs=needs))
    return result


def _model_metadata(model: Object, source: str) -> dict[str, Any]:
    metadata = (model.get("status") or {}).get("metadata")
    if isinstance(metadata, dict) and metadata:
        return metadata
    if source.startswith("file://") and Path(source[len("file://") :]).is_file():
        from corral.models.metadata import read_gguf_metadata

        return read_gguf_metadata(source[len("file://") :]).to_dict()
    return {}


def _from_manifests(sources: Sequence[str], namespace: str) -> list[Object]:
    from corral.api.manifest import load_manifests

    objects: list[Object] = []
    for document in load_manifests(sources):
        body = document.body
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise click.ClickException(f"{document.location}: not an object with metadata")
        if body.get("kind") in ("Endpoint", "Model"):
            body["metadata"].setdefault("namespace", namespace)
        objects.append(body)
    return objects


def _from_server(remote: Remote, name: str, namespace: str) -> list[Object]:
    from corral.api.registry import lookup_kind

    with remote.client() as client:
        endpoint = client.get("Endpoint", name, namespace=namespace)
        objects: list[Object] = [endpoint]
        for ref in (endpoint.get("spec") or {}).get("models") or []:
            objects.append(client.get("Model", str(ref.get("model")), namespace=namespace))
        if lookup_kind("DeviceClass") is not None:
            objects += client.list("DeviceClass", namespace=None).items
    return objects
