"""Two replaces carrying the same resourceVersion: exactly one wins, the other gets Conflict.

The object is a Lease in the default namespace: no controller writes it, so the only writers
are the two under test.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

from corral.api.errors import ApiError, Conflict
from corral.client import CorralClient, resolve_connection

from .helpers import Cli, ServerProcess, write

LEASE = """\
apiVersion: corral.dev/v1alpha1
kind: Lease
metadata: {name: contended}
spec: {holderIdentity: nobody}
"""

WRITERS = 2


def test_concurrent_replaces_with_one_version_give_one_conflict(
    cli: Cli, server: ServerProcess, tmp_path: Path
) -> None:
    cli.ok("apply", "-f", str(write(tmp_path, {"lease.yaml": LEASE})))
    connection = resolve_connection(state_dir=server.state_dir)
    clients = [CorralClient(connection.url, connection.token) for _ in range(WRITERS)]
    try:
        current = clients[0].get("Lease", "contended")
        start = threading.Barrier(WRITERS)
        outcomes: list[object] = [None] * WRITERS

        def replace(index: int) -> None:
            changed = copy.deepcopy(current)
            changed["spec"]["holderIdentity"] = f"writer-{index}"
            start.wait(timeout=30)
            try:
                outcomes[index] = clients[index].replace(changed)
            except ApiError as error:
                outcomes[index] = error

        threads = [threading.Thread(target=replace, args=(i,)) for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for client in clients:
            client.close()

    conflicts = [outcome for outcome in outcomes if isinstance(outcome, Conflict)]
    written = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    assert (len(conflicts), len(written)) == (1, 1), outcomes
    stored = cli.json("get", "lease", "contended")
    assert stored["spec"]["holderIdentity"] == written[0]["spec"]["holderIdentity"]
    assert stored["metadata"]["generation"] == 2
