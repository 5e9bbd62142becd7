"""The quickstart, end to end: ``corral up -f examples/quickstart.yaml`` serves SmolLM2 through
the gateway, ``corral chat`` streams its replies, ``corral logs`` shows llama.cpp's output, and
the snippets ``up`` prints work when pasted.

One ``corral up`` (one real llama.cpp replica) serves the whole module.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import CLI_TIMEOUT_S, Cli, ServerProcess, clean_env

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
STACK_TIMEOUT_S = 100
READY_LINE = "✓ the stack is ready after"
REPLICA = "default.chat.smollm2-135m.0"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("quickstart")
    state_dir = root / "state"
    args = ["up", "--port", "0", "--state-dir", str(state_dir), "-f", str(QUICKSTART)]
    process = ServerProcess([*args, "--wait-timeout", str(STACK_TIMEOUT_S)], state_dir, root)
    process.start()
    try:
        process.wait_ready()
        deadline = time.monotonic() + STACK_TIMEOUT_S + 10
        while READY_LINE not in process.stdout:
            assert "✗" not in process.stdout, process.stdout + process.stderr
            assert time.monotonic() < deadline, process.stdout + process.stderr
            assert process.process is not None
            assert process.process.poll() is None, process.stderr
            time.sleep(0.1)
        yield process
    finally:
        process.stop()


@pytest.fixture
def cli(quickstart: ServerProcess, tmp_path: Path) -> Cli:
    return Cli(clean_env(CORRAL_STATE_DIR=str(quickstart.state_dir)), tmp_path)


def test_chat_with_one_message_streams_the_reply_and_exits_0(cli: Cli) -> None:
    result = cli("chat", "-m", "Say hello.", "--max-tokens", "12", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    assert re.search(r"\w", result.stdout), result.stdout


def test_chat_keeps_going_over_stdin_and_ends_at_end_of_input(cli: Cli) -> None:
    typed = "Name a colour.\n/reset\nName a fruit.\n"
    result = cli(
        "chat",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--system",
        "Answer in one word.",
        input=typed,
    )
    assert result.returncode == 0, result.stderr
    assert "Chatting with 'chat'." in result.stderr
    assert "(conversation cleared)" in result.stderr
    replies = [part for part in result.stdout.split("> ") if part.strip()]
    assert len(replies) == 2, result.stdout


def test_chat_with_an_unknown_endpoint_exits_1_with_the_gateways_message(cli: Cli) -> None:
    result = cli("chat", "no-such-endpoint", "-m", "hello")
    assert result.returncode == 1
    assert result.stderr.startswith("error: The model 'no-such-endpoint' does not exist")
    assert result.stdout == ""

    interactive = cli("chat", "no-such-endpoint", input="hello\n")
    assert interactive.returncode == 1
    assert "error: The model 'no-such-endpoint' does not exist" in interactive.stderr


def test_logs_show_each_replica_with_llamacpps_own_lines(cli: Cli) -> None:
    text = cli.ok("logs", "endpoint/chat", "--tail", "5000")
    lines = text.splitlines()
    assert lines[0] == f"==> {REPLICA} (model smollm2-135m) <=="
    assert any(line.startswith("llama_model_loader: loaded meta data") for line in lines)
    assert any("Uvicorn running on http://127.0.0.1:" in line for line in lines)

    short = cli.ok("logs", "endpoint/chat", "--tail", "3", "--replica", REPLICA)
    assert len(short.splitlines()) == 4


def test_logs_of_an_absent_endpoint_or_replica_exit_1(cli: Cli) -> None:
    absent = cli("logs", "endpoint/nope")
    assert absent.returncode == 1
    assert "nope" in absent.stderr

    replica = cli("logs", "endpoint/chat", "--replica", "r9")
    assert replica.returncode == 1
    assert replica.stderr.strip() == (
        f"error: endpoint/chat has no replica 'r9' (its replicas: {REPLICA})"
    )


def snippet(stdout: str, heading: str) -> str:
    """The indented block (blank lines included) that follows ``heading``, dedented."""
    assert heading in stdout, stdout
    block: list[str] = []
    for line in stdout.split(heading + "\n", 1)[1].splitlines():
        if line.strip() and not line.startswith("  "):
            break
        block.append(line[2:])
    return "\n".join(block).strip() + "\n"


def test_up_prints_snippets_that_work_when_pasted(
    quickstart: ServerProcess, tmp_path: Path
) -> None:
    out = quickstart.stdout
    assert f"  corral chat --state-dir {quickstart.state_dir}" in out
    curl = snippet(out, "Call it with curl (an OpenAI-compatible API):")
    assert f"$(cat {quickstart.state_dir / 'admin.token'})" in curl
    answered = subprocess.run(
        ["bash", "-c", curl], capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    assert answered.returncode == 0, answered.stderr
    reply = json.loads(answered.stdout)
    assert reply["choices"][0]["message"]["content"], reply

    python = snippet(out, "Or from Python (pip install openai):")
    script = tmp_path / "snippet.py"
    script.write_text(python.replace("messages=", "max_tokens=8, messages=", 1))
    ran = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=clean_env(),
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip(), python
