"""``corral get`` and ``corral describe``: reading objects, once or as they change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from corral.cli.remote import Remote, remote_options

if TYPE_CHECKING:
    from corral.api.registry import KindInfo
    from corral.client import CorralClient

Object = dict[str, Any]
HISTORY_IN_DESCRIBE = 5


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default="default", show_default=True, help="namespace to read")
@click.option("-A", "--all-namespaces", is_flag=True, help="read every namespace")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["wide", "yaml", "json"]),
    help="wide: add the kind's columns and every condition; yaml/json: whole objects",
)
@click.option("-l", "--selector", metavar="SELECTOR", help="label selector, e.g. team=search")
@click.option("-w", "--watch", is_flag=True, help="after listing, print changes as they happen")
@remote_options
def get(
    kind: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: str | None,
    selector: str | None,
    watch: bool,
    remote: Remote,
) -> None:
    """List objects of KIND (or show the one called NAME).

    KIND is a kind, plural or short name: endpoint, endpoints, ep. The table shows NAME,
    STATUS (the Ready condition) and AGE; -o wide adds the kind's own columns. -o yaml and
    -o json print whole objects (a List when there are several), ready for `apply -f`.
    """
    from corral.client import resolve_kind

    if name and all_namespaces:
        raise click.UsageError("NAME and -A/--all-namespaces do not go together")
    info = resolve_kind(kind)
    scope = None if all_namespaces or not info.namespaced else namespace
    with remote.client() as client:
        if name:
            items = [client.get(info.kind, name, namespace=namespace)]
            resource_version = int(items[0]["metadata"].get("resourceVersion") or 0)
        else:
            listed = client.list(info.kind, namespace=scope, label_selector=selector)
            items, resource_version = listed.items, listed.resource_version
        _print_objects(info, items, output, all_namespaces=scope is None, single=bool(name))
        if watch:
            _follow(client, info, scope, name, selector, resource_version, output)


def _print_objects(
    info: KindInfo, items: list[Object], output: str | None, *, all_namespaces: bool, single: bool
) -> None:
    from corral.cli import render

    if output in ("yaml", "json"):
        document = items[0] if single else render.as_list(items)
        text = render.to_yaml(document) if output == "yaml" else render.to_json(document)
        click.echo(text.rstrip("\n"))
        return
    if not items:
        click.echo(f"No {info.plural} found.", err=True)
        return
    wide = output == "wide"
    headers = render.columns(info, wide=wide, all_namespaces=all_namespaces)
    rows = [render.row(info, obj, wide=wide, all_namespaces=all_namespaces) for obj in items]
    render.emit(render.table(headers, rows))


def _follow(
    client: CorralClient,
    info: KindInfo,
    namespace: str | None,
    name: str | None,
    selector: str | None,
    resource_version: int,
    output: str | None,
) -> None:
    """Print each change after ``resource_version``; relist and go on when the log expired."""
    import orjson

    from corral.api.errors import Gone
    from corral.cli import render

    wide = output == "wide"
    all_namespaces = namespace is None
    while True:
        try:
            for event in client.watch(
                info.kind,
                namespace=namespace,
                resource_version=resource_version,
                label_selector=selector,
            ):
                obj = event.get("object") or {}
                metadata = obj.get("metadata") or {}
                resource_version = int(metadata.get("resourceVersion") or resource_version)
                if name and metadata.get("name") != name:
                    continue
                if output == "json":
                    click.echo(orjson.dumps(event).decode())
                elif output == "yaml":
                    click.echo("---\n" + render.to_yaml(event).rstrip("\n"))
                else:
                    cells = render.row(info, obj, wide=wide, all_namespaces=all_namespaces)
                    click.echo("   ".join([str(event.get("type", "")), *cells]))
            return
        except Gone:
            resource_version = client.list(
                info.kind, namespace=namespace, label_selector=selector
            ).resource_version


@click.command()
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@remote_options
def describe(kind: str, name: str, namespace: str, remote: Remote) -> None:
    """Show one object in full: metadata, spec, status, conditions and recent history."""
    from corral.cli import render
    from corral.client import resolve_kind

    info = resolve_kind(kind)
    with remote.client() as client:
        obj = client.get(info.kind, name, namespace=namespace)
        history = client.history(info.kind, name, namespace=namespace)
    render.emit(*_describe(info, obj, history))


def _describe(info: KindInfo, obj: Object, history: list[dict[str, Any]]) -> list[Any]:
    from rich.padding import Padding
    from rich.text import Text

    from corral.cli import render

    metadata = obj.get("metadata") or {}
    fields = [
        ("Name", metadata.get("name")),
        ("Namespace", metadata.get("namespace") if info.namespaced else None),
        ("Kind", f"{info.kind} ({obj.get('apiVersion', '')})"),
        ("Labels", _pairs(metadata.get("labels"))),
        ("Annotations", _pairs(metadata.get("annotations"))),
        ("UID", metadata.get("uid")),
        ("Generation", metadata.get("generation")),
        ("ResourceVersion", metadata.get("resourceVersion")),
        ("Created", _when(metadata.get("creationTimestamp"))),
        ("Deleting since", _when(metadata.get("deletionTimestamp"))),
        ("Finalizers", ", ".join(metadata.get("finalizers") or []) or None),
        ("Owners", _owners(metadata.get("ownerReferences"))),
    ]
    parts: list[Any] = [
        render.table(
            ["", ""],
            [[f"{label}:", str(value)] for label, value in fields if value],
            show_header=False,
        )
    ]
    parts.append(Text("Spec:", "bold"))
    parts.append(render.indented(render.to_yaml(obj.get("spec") or {})))
    status = dict(obj.get("status") or {})
    conditions = status.pop("conditions", None) or []
    if status:
        parts.append(Text("Status:", "bold"))
        parts.append(render.indented(render.to_yaml(status)))
    parts.append(Text("Conditions:", "bold"))
    if conditions:
        rows = [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason") or "-"),
                str(c.get("message") or "-"),
                render.age(c.get("lastTransitionTime")),
            ]
            for c in conditions
        ]
        headers = ["TYPE", "STATUS", "REASON", "MESSAGE", "AGE"]
        parts.append(Padding(render.table(headers, rows), (0, 0, 0, 2), expand=False))
    else:
        parts.append(render.indented(f"{render.NONE} (no controller has reported yet)"))
    parts.append(Text(f"History (last {HISTORY_IN_DESCRIBE}):", "bold"))
    parts.append(
        Padding(render.history_table(history[-HISTORY_IN_DESCRIBE:]), (0, 0, 0, 2), expand=False)
    )
    return parts


def _pairs(mapping: dict[str, str] | None) -> str | None:
    return ", ".join(f"{key}={value}" for key, value in (mapping or {}).items()) or "<none>"


def _when(timestamp: str | None) -> str | None:
    from corral.cli import render

    return f"{timestamp} ({render.age(timestamp)} ago)" if timestamp else None


def _owners(references: list[dict[str, Any]] | None) -> str | None:
    owners = [f"{ref.get('kind')}/{ref.get('name')}" for ref in references or []]
    return ", ".join(owners) or None
