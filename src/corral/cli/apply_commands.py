"""``corral apply``, ``corral diff`` and ``corral delete``: changing what is declared.

``apply`` and ``diff`` validate the whole manifest set locally first (every problem, with its
``file.yaml[i]`` location, and nothing is sent when there is one), then make ONE ``/apply``
request, which the server runs all-or-nothing; ``diff`` is that request as a dry run.
"""

from __future__ import annotations

from typing import Any

import click

from corral.cli.remote import Remote, remote_options

DIFF_NO_CHANGES = 0
DIFF_CHANGES = 1
DIFF_ERROR = 2

_sources_option = click.option(
    "-f",
    "--filename",
    "sources",
    multiple=True,
    required=True,
    metavar="FILE|DIR|-",
    help="manifest file, directory (recursive: *.yaml, *.yml, *.json) or - for stdin; repeatable",
)
_namespace_option = click.option(
    "-n",
    "--namespace",
    default="default",
    show_default=True,
    help="namespace for objects whose manifest names none",
)
_prune_options = [
    click.option(
        "--prune",
        is_flag=True,
        help="delete objects matching -l that the manifests no longer declare",
    ),
    click.option("-l", "--selector", metavar="SELECTOR", help="with --prune: what may be pruned"),
    click.option(
        "--prune-kind",
        "prune_kinds",
        multiple=True,
        metavar="KIND",
        help="with --prune: only prune these kinds (default: every kind but Namespace)",
    ),
]


def _with_prune_options(func: Any) -> Any:
    for option in reversed(_prune_options):
        func = option(func)
    return func


def _prune_selector(prune: bool, selector: str | None, prune_kinds: tuple[str, ...]) -> str | None:
    if prune and not selector:
        raise click.UsageError("--prune needs -l/--selector: say which objects it may delete")
    if selector and not prune:
        raise click.UsageError("-l/--selector only chooses what --prune may delete: add --prune")
    if prune_kinds and not prune:
        raise click.UsageError("--prune-kind only makes sense with --prune")
    return selector if prune else None


@click.command()
@_sources_option
@_namespace_option
@_with_prune_options
@click.option("--dry-run", is_flag=True, help="show what would happen; change nothing")
@remote_options
def apply(
    sources: tuple[str, ...],
    namespace: str,
    prune: bool,
    selector: str | None,
    prune_kinds: tuple[str, ...],
    dry_run: bool,
    remote: Remote,
) -> None:
    """Create or update every object declared in the manifests, all or nothing.

    Prints one line per object: `endpoint/chat created|configured|unchanged|pruned`.
    With --prune -l SELECTOR, objects matching SELECTOR that the manifests no longer declare
    are deleted in the same transaction.
    """
    from corral.cli.manifests import load_validated, outcome_line

    prune_selector = _prune_selector(prune, selector, prune_kinds)
    manifests = load_validated(sources, namespace=namespace)
    with remote.client() as client:
        outcomes = client.apply(
            manifests.objects,
            locations=manifests.locations,
            dry_run=dry_run,
            prune_selector=prune_selector,
            prune_kinds=list(prune_kinds) or None,
        )
    for outcome in outcomes:
        click.echo(outcome_line(outcome, dry_run=dry_run))


@click.command()
@_sources_option
@_namespace_option
@_with_prune_options
@remote_options
@click.pass_context
def diff(
    ctx: click.Context,
    sources: tuple[str, ...],
    namespace: str,
    prune: bool,
    selector: str | None,
    prune_kinds: tuple[str, ...],
    remote: Remote,
) -> None:
    """Show what `apply` would change, field by field, without changing anything.

    Exit status, as with `kubectl diff`: 0 no differences, 1 differences found,
    2 an error (invalid manifests, unreachable server, usage).
    """
    from corral.cli.errors import is_expected, report

    try:
        changed = _diff(
            sources, namespace, _prune_selector(prune, selector, prune_kinds), prune_kinds, remote
        )
    except click.UsageError:
        raise
    except Exception as error:
        if not is_expected(error):
            raise
        report(error)
        ctx.exit(DIFF_ERROR)
    ctx.exit(DIFF_CHANGES if changed else DIFF_NO_CHANGES)


def _diff(
    sources: tuple[str, ...],
    namespace: str,
    prune_selector: str | None,
    prune_kinds: tuple[str, ...],
    remote: Remote,
) -> bool:
    from rich.text import Text

    from corral.cli import render
    from corral.cli.manifests import load_validated, outcome_line

    manifests = load_validated(sources, namespace=namespace)
    with remote.client() as client:
        outcomes = client.apply(
            manifests.objects,
            locations=manifests.locations,
            dry_run=True,
            prune_selector=prune_selector,
            prune_kinds=list(prune_kinds) or None,
        )
    changes = [outcome for outcome in outcomes if outcome.get("action") != "unchanged"]
    styles = {"created": "green", "pruned": "red", "configured": "yellow"}
    lines: list[Text] = []
    for outcome in changes:
        action = str(outcome.get("action"))
        lines.append(Text(outcome_line(outcome), style=f"bold {styles.get(action, '')}"))
        if action == "pruned":
            lines.append(Text("  - (the whole object is deleted)", "red"))
            continue
        lines.extend(Text("  ") + line for line in render.diff_lines(outcome.get("diff") or []))
    if lines:
        render.emit(*lines)
    if not changes:
        click.echo(f"no differences ({len(outcomes)} object(s) unchanged)", err=True)
    return bool(changes)


@click.command()
@click.argument("kind", required=False)
@click.argument("name", required=False)
@click.option(
    "-f",
    "--filename",
    "sources",
    multiple=True,
    metavar="FILE|DIR|-",
    help="delete every object these manifests declare (instead of KIND NAME)",
)
@_namespace_option
@click.option("--ignore-not-found", is_flag=True, help="an absent object is not an error")
@remote_options
def delete(
    kind: str | None,
    name: str | None,
    sources: tuple[str, ...],
    namespace: str,
    ignore_not_found: bool,
    remote: Remote,
) -> None:
    """Delete KIND NAME, or every object declared in -f manifests.

    Objects with finalizers are marked for deletion and go once their finalizers are done.
    With -f, every object is attempted; the exit status is 1 if any could not be deleted.
    """
    from corral.api.errors import ApiError, NotFound

    if sources and (kind or name):
        raise click.UsageError("give either KIND NAME or -f FILE, not both")
    if not sources and not (kind and name):
        raise click.UsageError("give KIND NAME (e.g. `corral delete endpoint chat`) or -f FILE")
    targets = (
        _targets_from(sources, namespace) if sources else [(kind or "", namespace, name or "")]
    )
    failures: list[str] = []
    with remote.client() as client:
        for target_kind, target_namespace, target_name in targets:
            label = f"{target_kind.lower()}/{target_name}"
            try:
                deleted = client.delete(target_kind, target_name, namespace=target_namespace)
            except NotFound as error:
                if ignore_not_found:
                    continue
                if not sources:
                    raise
                failures.append(str(error))
                continue
            except ApiError as error:
                if not sources:
                    raise
                failures.append(f"{label}: {error}")
                continue
            click.echo(f"{label} {_deleted_word(deleted)}")
    if failures:
        raise ApiError(
            f"{len(failures)} of {len(targets)} object(s) could not be deleted",
            causes=[_cause(failure) for failure in failures],
        )


def _targets_from(sources: tuple[str, ...], namespace: str) -> list[tuple[str, str, str]]:
    """``(kind, namespace, name)`` of every document; every problem reported before any delete."""
    from corral.api.errors import FieldError, Invalid
    from corral.api.manifest import load_manifests
    from corral.api.registry import lookup_kind

    targets: list[tuple[str, str, str]] = []
    problems: list[FieldError] = []
    for document in load_manifests(sources):
        body: dict[str, Any] = document.body if isinstance(document.body, dict) else {}
        raw_metadata = body.get("metadata")
        metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        info = lookup_kind(str(body.get("kind", "")))
        if info is None or info.kind != body.get("kind"):
            problems.append(
                FieldError("kind", f"unknown kind {body.get('kind')!r}", document.location)
            )
            continue
        if not metadata.get("name"):
            problems.append(FieldError("metadata.name", "required", document.location))
            continue
        target_namespace = str(metadata.get("namespace") or namespace) if info.namespaced else ""
        targets.append((info.kind, target_namespace, str(metadata["name"])))
    if problems:
        raise Invalid(f"nothing was deleted: {len(problems)} problem(s)", causes=problems)
    return targets


def _deleted_word(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    finalizers = metadata.get("finalizers") or []
    if metadata.get("deletionTimestamp") and finalizers:
        return f"marked for deletion (waiting for finalizers: {', '.join(finalizers)})"
    return "deleted"


def _cause(message: str) -> Any:
    from corral.api.errors import FieldError

    return FieldError("", message)
