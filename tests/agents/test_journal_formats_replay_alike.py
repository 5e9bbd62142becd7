"""A model step is journaled by its result alone (``activity_completed`` or ``activity_failed``
carry its step and attempt); journals written before that change have an ``activity_scheduled``
entry before each model result. Both replay to the same state and the same next decision, with
the same step numbers (so the same idempotency keys), also when a crash cut the journal in the
middle of a model call; and an old journal on disk resumes and finishes on a new runtime."""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Any

from agents.conftest import (
    RecordingTools,
    ScriptedModel,
    agent,
    binding,
    reply,
    tool_calls,
    tool_results,
)
from corral.agents.events import (
    ActivityCompleted,
    ActivityScheduled,
    Event,
    SessionCreated,
    UserMessage,
    decode,
    encode,
    idempotency_key,
)
from corral.agents.orchestration import RunModel, SessionState, decide, fold

LOOKUP = binding("lookup")
AGENT = agent(LOOKUP)


def two_lookups(messages: list[dict[str, Any]]) -> Any:
    results = tool_results(messages)
    if len(results) < 2:
        return tool_calls(("lookup", {"n": len(results)}))
    return reply(" + ".join(results))


def with_model_scheduling(sid: str, events: list[Event]) -> list[Event]:
    """The same journal in the earlier format: each model result preceded by its scheduling."""
    old: list[Event] = []
    tool_steps: set[int] = set()
    for event in events:
        if isinstance(event, ActivityScheduled):
            tool_steps.add(event.step)
        step = getattr(event, "step", None)
        result = event.kind in ("activity_completed", "activity_failed")
        if result and step not in tool_steps:
            attempt = getattr(event, "attempt", 1)
            old.append(
                ActivityScheduled(step, "model", idempotency_key(sid, step), attempt=attempt)
            )
        old.append(event)
    return old


def replay(sid: str, events: list[Event]) -> SessionState:
    state = SessionState(sid)
    for seq, event in enumerate(events, 1):
        fold(state, event, seq, 1.0)
    return state


def same_state(a: SessionState, b: SessionState) -> None:
    for f in fields(SessionState):
        if f.name not in ("seq", "in_flight"):  # the old journal has more rows
            assert getattr(a, f.name) == getattr(b, f.name), f.name


async def journal_of(journal: Any, sid: str) -> list[Event]:
    return [decode(row.kind, row.payload) for row in await journal.read_events(sid)]


async def test_both_formats_replay_to_the_same_state_at_every_point(
    journal: Any, make_runtime: Any
) -> None:
    failures = iter([RuntimeError("upstream 503")])

    def flaky_then_two_lookups(messages: list[dict[str, Any]]) -> Any:
        if len(tool_results(messages)) == 1:  # the second model step fails once, retried
            failure = next(failures, None)
            if failure is not None:
                return failure
        return two_lookups(messages)

    tools = RecordingTools(lookup=lambda n: f"value {n}")
    runtime = await make_runtime([AGENT], ScriptedModel(flaky_then_two_lookups), tools)
    sid = await runtime.create_session("default", "helper", message="go")
    assert await runtime.wait(sid) == "waiting_input"
    new = await journal_of(journal, sid)
    assert not [e for e in new if isinstance(e, ActivityScheduled) and e.activity == "model"]
    assert [e.kind for e in new if getattr(e, "step", None) == 3] == [
        "activity_failed",
        "activity_completed",
    ]
    old = with_model_scheduling(sid, new)
    assert len(old) == len(new) + 4  # model steps 1, 3 (twice: a failure, then a retry), 5

    # Cut both journals after every entry (a crash there): same state, same next step.
    for cut in range(2, len(new) + 1):
        now = replay(sid, new[:cut])
        before = replay(sid, old[: old.index(new[cut - 1]) + 1])
        same_state(now, before)
        assert decide(now, AGENT) == decide(before, AGENT)
    assert replay(sid, new).summary() == (await runtime.get(sid)).session.summary


async def test_a_crash_in_a_model_call_runs_the_same_step_in_both_formats() -> None:
    sid = "s1"
    start: list[Event] = [
        SessionCreated("default", "helper", AGENT.limits.to_json()),
        UserMessage("go"),
    ]
    # New format: nothing of the call is on disk; old format: its scheduling is.
    new = replay(sid, start)
    old = replay(sid, [*start, ActivityScheduled(1, "model", idempotency_key(sid, 1))])
    assert decide(new, AGENT) == RunModel(1)
    assert decide(old, AGENT) == RunModel(1, resume=True)


async def test_an_old_journal_on_disk_resumes_with_the_same_steps(
    journal: Any, make_runtime: Any
) -> None:
    """A session journaled in the earlier format, stopped in its second model call (step 3),
    resumes there and finishes: the next tool step is 4, the journal reads the same."""
    sid = "01OLDFORMAT000000000000001"
    events: list[Event] = [
        SessionCreated("default", "helper", AGENT.limits.to_json()),
        UserMessage("go"),
        ActivityScheduled(1, "model", idempotency_key(sid, 1)),
    ]
    call = {"id": "c0", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    events += [
        ActivityCompleted(
            1, {"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "usage": {}}
        ),
        ActivityScheduled(2, "tool", idempotency_key(sid, 2), "lookup", {"n": 0}, "c0"),
        ActivityCompleted(2, {"content": "value 0", "error": False}),
        ActivityScheduled(3, "model", idempotency_key(sid, 3)),
    ]
    now = time.time()
    rows = []
    for seq, event in enumerate(events, 1):
        kind, payload = encode(event)
        rows.append((sid, seq, kind, payload, now))
    await journal.create(
        sid, "default", "helper", rows, state="active", owner=None, lease_seconds=0, now=now
    )
    tools = RecordingTools(lookup=lambda n: f"value {n}")
    model = ScriptedModel(two_lookups)
    runtime = await make_runtime([AGENT], model, tools)
    assert await runtime.wait(sid) == "waiting_input"
    assert [call[3] for call in tools.calls] == [f"{sid}:4"]
    assert len(model.requests) == 2  # step 3 (resumed), step 5
    view = await runtime.get(sid)
    assert view.events[-1]["text"] == "value 0 + value 1"
    steps = [(e["kind"], e["step"]) for e in view.events if e.get("step")]
    assert steps == [
        ("activity_scheduled", 1),
        ("activity_completed", 1),
        ("activity_scheduled", 2),
        ("activity_completed", 2),
        ("activity_scheduled", 3),  # written by the old runtime
        ("activity_completed", 3),
        ("activity_scheduled", 4),
        ("activity_completed", 4),
        ("activity_completed", 5),  # written by this one
    ]
    assert view.session.summary["steps"] == 5
