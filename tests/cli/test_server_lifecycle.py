"""``corral up``: state dir, token shown once, server.json while serving, clean stop, -f stack."""

from __future__ import annotations

import json
import signal
import stat
import threading
import time
from pathlib import Path

from corral.client import CorralClient, ServerUnreachable

from .helpers import Cli, ServerProcess, clean_env, model, write


def up(tmp_path: Path, *extra: str, name: str = "up") -> ServerProcess:
    state_dir = tmp_path / "state"
    return ServerProcess(
        ["up", "--port", "0", "--state-dir", str(state_dir), "--log-level", "info", *extra],
        state_dir,
        tmp_path / name,
    ).start()


def test_token_is_shown_once_and_server_json_lives_while_serving(tmp_path: Path) -> None:
    first = up(tmp_path, name="first")
    url = first.wait_ready()
    state_dir = tmp_path / "state"
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    token = (state_dir / "admin.token").read_text().strip()
    assert json.loads((state_dir / "server.json").read_text()) == {"url": url, "pid": first.pid}
    assert first.stop(signal.SIGTERM) == 0
    assert f"corral is up at {url}" in first.stdout
    assert f"store:       sqlite:///{state_dir.resolve() / 'corral.db'}" in first.stdout
    assert token in first.stdout
    assert not (state_dir / "server.json").exists()

    second = up(tmp_path, name="second")
    second.wait_ready()
    assert second.stop(signal.SIGINT) == 0
    assert f"admin token: {state_dir / 'admin.token'}" in second.stdout
    assert token not in second.stdout
    assert not (state_dir / "server.json").exists()


def test_up_with_a_stack_applies_it_once_ready(tmp_path: Path) -> None:
    stack = write(tmp_path / "stack", {"m.yaml": model("from-up")})
    server = up(tmp_path, "-f", str(stack))
    try:
        server.wait_ready()
        cli = Cli(clean_env(CORRAL_STATE_DIR=str(server.state_dir)), tmp_path)
        assert cli.json("get", "model", "from-up")["metadata"]["name"] == "from-up"
    finally:
        assert server.stop() == 0
    assert "model/from-up created" in server.stdout


def test_up_refuses_an_invalid_stack_before_starting(tmp_path: Path) -> None:
    stack = write(tmp_path / "stack", {"m.yaml": "kind: Model\nmetadata: {name: x}\n"})
    server = up(tmp_path, "-f", str(stack))
    assert server.stop(None) == 1
    assert f"{stack / 'm.yaml'}[0] apiVersion: must be" in server.stderr
    assert not (tmp_path / "state" / "server.json").exists()


def test_a_busy_port_is_a_clear_error(tmp_path: Path, server: ServerProcess) -> None:
    port = json.loads((server.state_dir / "server.json").read_text())["url"].rsplit(":", 1)[1]
    busy = ServerProcess(
        ["up", "--port", port, "--state-dir", str(tmp_path / "state")],
        tmp_path / "state",
        tmp_path / "busy",
    ).start()
    assert busy.stop(None) == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: " in busy.stderr
    assert "Traceback" not in busy.stderr


def test_stopping_with_an_open_watch_is_clean(tmp_path: Path) -> None:
    server = up(tmp_path)
    url = server.wait_ready()
    token = (server.state_dir / "admin.token").read_text().strip()
    ended: list[BaseException] = []

    def watch() -> None:
        with CorralClient(url, token) as client:
            try:
                for _ in client.watch("Namespace", namespace=None):
                    watching.set()
            except ServerUnreachable as error:
                ended.append(error)

    watching = threading.Event()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert watching.wait(timeout=30)
    finally:
        assert server.stop() == 0
        watcher.join(timeout=60)
    assert [type(error) for error in ended] == [ServerUnreachable]
    assert "closed the connection" in str(ended[0])
    assert "Traceback" not in server.stderr
    assert "ERROR" not in server.stderr


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    server = up(tmp_path)
    url = server.wait_ready()
    token = (server.state_dir / "admin.token").read_text().strip()
    watching = threading.Event()

    def watch() -> None:
        # An open watch holds a graceful stop for the whole grace period.
        with CorralClient(url, token) as client:
            try:
                for _ in client.watch("Namespace", namespace=None):
                    watching.set()
            except ServerUnreachable:
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert watching.wait(timeout=30)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        _wait_for_line(server, "SIGTERM received: stopping")
    finally:
        code = server.stop(signal.SIGINT)
        watcher.join(timeout=60)
    assert code == 1
    assert "error: stopped at once on a second signal; work in flight was cut" in server.stderr
    assert not (server.state_dir / "server.json").exists()


def _wait_for_line(server: ServerProcess, text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in server.stderr:
        assert time.monotonic() < deadline, server.stderr
        time.sleep(0.05)
