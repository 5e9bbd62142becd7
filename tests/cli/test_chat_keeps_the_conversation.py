"""``corral chat``'s loop: history sent with each message, /reset, failed turns, clean exits.

The loop runs in-process over an ``httpx.MockTransport`` gateway that answers each request with
the number of messages it was sent, so the replies show what history went out.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import orjson
import pytest

from corral.cli.chat_session import ChatSettings, Conversation, interactive
from corral.client import GatewayClient

SETTINGS = ChatSettings("chat", max_tokens=16)


class FakeGateway:
    def __init__(self) -> None:
        self.sent: list[list[dict[str, str]]] = []
        self.fail_next = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        messages = orjson.loads(request.content)["messages"]
        self.sent.append(messages)
        if self.fail_next:
            self.fail_next = False
            body = {"error": {"message": "Endpoint 'chat' has no ready replica", "code": "x"}}
            return httpx.Response(503, json=body)
        events = [
            {"choices": [{"delta": {"content": f"{len(messages)} "}, "finish_reason": None}]},
            {"choices": [{"delta": {"content": "messages"}, "finish_reason": "stop"}]},
        ]
        body = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)
        return httpx.Response(200, content=body + b"data: [DONE]\n\n")


@pytest.fixture
def fake() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def client(fake: FakeGateway) -> Iterator[GatewayClient]:
    with GatewayClient("http://corral.test/v1", "t", transport=httpx.MockTransport(fake)) as c:
        yield c


def run(client: GatewayClient, conversation: Conversation, lines: list[str]) -> tuple[str, str]:
    """Feed ``lines`` as typed input (then Ctrl-D); the loop's stdout and stderr."""
    typed = iter(lines)

    def read_line(prompt: str) -> str:
        out.write(prompt)
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    out, err = io.StringIO(), io.StringIO()
    interactive(client, conversation, SETTINGS, read_line=read_line, out=out, err=err)
    return out.getvalue(), err.getvalue()


def test_each_message_goes_out_with_the_conversation_so_far(
    client: GatewayClient, fake: FakeGateway
) -> None:
    out, _ = run(client, Conversation("be brief"), ["hello", "and again"])
    assert out == "> 2 messages\n> 4 messages\n> \n"
    assert fake.sent[1] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "2 messages"},
        {"role": "user", "content": "and again"},
    ]


def test_reset_forgets_the_exchanges_but_keeps_the_system_prompt(
    client: GatewayClient, fake: FakeGateway
) -> None:
    _, err = run(client, Conversation("be brief"), ["one", "two", "/reset", "three"])
    assert "(conversation cleared)" in err
    assert fake.sent[-1] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "three"},
    ]


def test_a_failed_turn_is_reported_and_left_out_of_the_history(
    client: GatewayClient, fake: FakeGateway
) -> None:
    fake.fail_next = True
    conversation = Conversation()
    _, err = run(client, conversation, ["first", "second"])
    assert "error: Endpoint 'chat' has no ready replica\n" in err
    assert fake.sent[1] == [{"role": "user", "content": "second"}]
    assert [m["role"] for m in conversation.messages] == ["user", "assistant"]


def test_blank_lines_are_ignored_and_exit_ends_the_loop(
    client: GatewayClient, fake: FakeGateway
) -> None:
    out, err = run(client, Conversation(), ["", "   ", "/exit", "never sent"])
    assert fake.sent == []
    assert out == "> > > "
    assert "/reset clears the conversation" in err


def test_ctrl_c_at_the_prompt_ends_cleanly(client: GatewayClient, fake: FakeGateway) -> None:
    def interrupted(_prompt: str) -> str:
        raise KeyboardInterrupt

    out, err = io.StringIO(), io.StringIO()
    interactive(client, Conversation(), SETTINGS, read_line=interrupted, out=out, err=err)
    assert out.getvalue() == "\n"
    assert fake.sent == []


def test_one_reply_returns_its_text_and_grows_the_history(client: GatewayClient) -> None:
    conversation = Conversation()
    pieces: list[str] = []
    assert conversation.reply(client, SETTINGS, "hi", pieces.append) == "1 messages"
    assert pieces == ["1 ", "messages"]
    assert conversation.messages[-1] == {"role": "assistant", "content": "1 messages"}
