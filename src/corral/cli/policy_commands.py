"""``corral policy test``: decide one request against Policy manifests, offline.

No server is involved: the policies and the request are read from files and evaluated with
``corral.policy.evaluate_request``, the same decision the gateway makes per request.
"""

from __future__ import annotations

from pathlib import Path

import click

EXIT_ALLOW = 0
EXIT_DENY = 1


@click.group()
def policy() -> None:
    """Work with Cedar Policies offline."""


@policy.command("test")
@click.option(
    "-f",
    "--filename",
    "sources",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Policy manifests: a file or directory (repeatable)",
)
@click.option(
    "--request",
    "request_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the request to decide, as YAML or JSON (see below)",
)
def test_policy(sources: tuple[str, ...], request_path: Path) -> None:
    """Decide REQUEST against the Policies in PATH; print allow or deny and the deciding policy.

    \b
    A request file:
      principal: {kind: team-key, id: default/ci-key, team: search, namespace: default}
      action: invoke            # invoke | call | apply | delete
      resource: {kind: Endpoint, metadata: {name: chat, namespace: default,
                                            labels: {team: search}}}
      context: {model: chat, estimated_tokens: 900, time: "2026-01-05T10:00:00Z"}

    \b
    Exit codes: 0 allow, 1 deny, 2 usage error; invalid policies or an invalid
    request are reported with their location and exit 1 as well (the message says why).
    """
    import yaml

    from corral.api.errors import BadRequest
    from corral.api.manifest import load_manifests
    from corral.policy import evaluate_request

    documents = load_manifests(list(sources))
    if not documents:
        raise BadRequest(f"no policies found in {', '.join(sources)}")
    try:
        request = yaml.safe_load(request_path.read_text())
    except yaml.YAMLError as error:
        raise BadRequest(f"{request_path}: not YAML or JSON: {error}") from None
    decision = evaluate_request(documents, request, location=str(request_path))
    if decision.allowed:
        click.echo(f"allow (permitted by {', '.join(decision.policies)})")
    elif decision.policies:
        click.echo(f"deny (forbidden by {', '.join(decision.policies)})")
    else:
        click.echo("deny (no policy permits it: denied by default)")
    for problem in decision.errors:
        click.echo(f"  error: {problem}", err=True)
    raise click.exceptions.Exit(EXIT_ALLOW if decision.allowed else EXIT_DENY)
