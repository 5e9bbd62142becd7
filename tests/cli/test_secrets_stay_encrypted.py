"""A Secret applied through the real CLI reads back in plain text but is ciphertext on disk."""

from __future__ import annotations

from pathlib import Path

from .helpers import Cli, ServerProcess, write

PLAIN = "sk-test-0123456789abcdefghij"


def test_secret_round_trips_and_never_reaches_disk_in_plain_text(
    cli: Cli, server: ServerProcess, tmp_path: Path
):
    manifest = write(
        tmp_path / "secret",
        {
            "secret.yaml": (
                "apiVersion: corral.dev/v1alpha1\nkind: Secret\n"
                f"metadata: {{name: upstream-key}}\nspec: {{data: {{apiKey: {PLAIN}}}}}\n"
            )
        },
    )
    assert "secret/upstream-key created" in cli.ok("apply", "-f", str(manifest))
    assert cli.json("get", "secret", "upstream-key")["spec"]["data"] == {"apiKey": PLAIN}
    key_file = server.state_dir / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    stored = b"".join(path.read_bytes() for path in server.state_dir.glob("corral.db*"))
    assert b"upstream-key" in stored  # the object is there ...
    assert PLAIN.encode() not in stored  # ... its value is not
