"""``corral history`` and ``corral rollback``: every generation of an object, and going back.

A rollback is an ordinary replace carrying the spec and labels of an earlier generation, with
the current resourceVersion, so it becomes a new generation (history only grows) and a
concurrent change turns into a Conflict rather than being overwritten.
"""

from __future__ import annotations

from typing import Any

import click

from corral.cli.remote import Remote, remote_options


@click.command()
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), help="whole entries")
@remote_options
def history(kind: str, name: str, namespace: str, output: str | None, remote: Remote) -> None:
    """Show every recorded generation of KIND/NAME: when, who, and what changed."""
    from corral.cli import render
    from corral.client import resolve_kind

    info = resolve_kind(kind)
    with remote.client() as client:
        entries = client.history(info.kind, name, namespace=namespace)
    if output == "yaml":
        click.echo(render.to_yaml(entries).rstrip("\n"))
    elif output == "json":
        click.echo(render.to_json(entries))
    else:
        render.emit(render.history_table(entries))


@click.command()
@click.argument("kind")
@click.argument("name")
@click.option(
    "--to-generation",
    "generation",
    type=click.IntRange(min=1),
    required=True,
    help="the generation whose spec and labels to restore (see `corral history`)",
)
@click.option("-n", "--namespace", default="default", show_default=True)
@remote_options
def rollback(kind: str, name: str, generation: int, namespace: str, remote: Remote) -> None:
    """Restore the spec and labels KIND/NAME had at generation N, as a new generation."""
    from corral.api.errors import NotFound
    from corral.client import resolve_kind

    info = resolve_kind(kind)
    label = f"{info.kind.lower()}/{name}"
    with remote.client() as client:
        entries = client.history(info.kind, name, namespace=namespace)
        target = _entry_for(entries, generation)
        if target is None:
            known = sorted({int(e["generation"]) for e in entries if e.get("action") != "deleted"})
            raise NotFound(
                f"{label} has no generation {generation}; recorded generations: "
                f"{', '.join(map(str, known)) or 'none'}"
            )
        current = client.get(info.kind, name, namespace=namespace)
        metadata = dict(current["metadata"])
        if current.get("spec") == target.get("spec") and metadata.get("labels", {}) == (
            target.get("labels") or {}
        ):
            click.echo(f"{label} unchanged (it already has generation {generation}'s spec)")
            return
        metadata["labels"] = dict(target.get("labels") or {})
        restored: dict[str, Any] = {
            "apiVersion": current["apiVersion"],
            "kind": current["kind"],
            "metadata": metadata,
        }
        if target.get("spec") is not None:
            restored["spec"] = target["spec"]
        updated = client.replace(restored)
    now = updated.get("metadata", {}).get("generation")
    click.echo(f"{label} rolled back to generation {generation} (now generation {now})")


def _entry_for(entries: list[dict[str, Any]], generation: int) -> dict[str, Any] | None:
    """The latest entry recorded at ``generation`` (labels may change within one)."""
    matching = [
        entry
        for entry in entries
        if entry.get("generation") == generation and entry.get("action") != "deleted"
    ]
    return matching[-1] if matching else None
