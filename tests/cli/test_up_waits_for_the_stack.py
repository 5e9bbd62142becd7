"""How ``corral up -f`` judges a stack while it waits: ready, still coming, or failed (and why).

These are the judgements alone, over objects written out as the controllers report them; the
end-to-end behaviour (progress, report, still serving) is in test_up_reports_what_failed.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.cli.manifests import ManifestSet
from corral.cli.stack_report import how_to_call, outcome_lines
from corral.cli.stack_wait import ENDPOINT, MODEL, Phase, Stack, StackState, Target, assess

MODEL_KEY = Target(MODEL, "default", "smol")
ENDPOINT_KEY = Target(ENDPOINT, "default", "chat")
DIR = Path("/srv/corral")


def condition(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def obj(
    kind: str, name: str, *, generation: int = 1, observed: int = 1, **status: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", "generation": generation},
        "spec": {},
    }
    if status:
        body["status"] = {"observedGeneration": observed, **status}
    return body


def stack(runtime: str = "llamacpp", *models: str) -> Stack:
    endpoint = obj(ENDPOINT, "chat")
    endpoint["spec"] = {
        "models": [{"model": name} for name in models or ("smol",)],
        "runtime": {"type": runtime},
    }
    return Stack.of(ManifestSet([obj(MODEL, "smol"), endpoint], ["s.yaml[0]", "s.yaml[1]"]))


def by_label(state: StackState) -> dict[str, tuple[Phase, str]]:
    return {item.target.label: (item.phase, item.summary) for item in state.items}


def ready_model() -> dict[str, Any]:
    return obj(MODEL, "smol", conditions=[condition("Ready", "True", "ArtifactReady")])


def test_the_stack_names_its_endpoints_and_every_model_they_serve() -> None:
    assert stack("llamacpp", "smol", "other").models == (
        MODEL_KEY,
        Target(MODEL, "default", "other"),
    )
    # An openai upstream serves without Model objects: nothing of its own to wait for.
    assert stack("openai", "gpt").models == (MODEL_KEY,)


def test_a_model_being_hashed_shows_its_progress() -> None:
    model = obj(MODEL, "smol", verification={"bytesDone": 25, "bytesTotal": 100})
    state = assess(stack(), {MODEL_KEY: model}, timed_out=False)
    verifying = state.items[0]
    assert (verifying.phase, verifying.verification) == (Phase.WAITING, (25, 100))
    assert not state.settled


def test_a_digest_mismatch_fails_the_model_and_the_endpoint_at_once() -> None:
    mismatch = "the Model expects sha256:aa but the file is sha256:bb"
    model = obj(
        MODEL,
        "smol",
        conditions=[
            condition("Verified", "False", "DigestMismatch", mismatch),
            condition("Ready", "False", "DigestMismatch", "digest mismatch"),
        ],
    )
    not_ready = condition("Ready", "False", "ModelNotReady", "Model smol is not ready")
    endpoint = obj(
        ENDPOINT,
        "chat",
        conditions=[
            condition("ModelsReady", not_ready["status"], "ModelNotReady", "same"),
            not_ready,
        ],
    )
    state = assess(stack(), {MODEL_KEY: model, ENDPOINT_KEY: endpoint}, timed_out=False)
    assert state.settled
    assert by_label(state) == {
        "model/smol": (Phase.FAILED, "DigestMismatch"),
        "endpoint/chat": (Phase.FAILED, "ModelNotReady"),
    }
    assert f"Verified=False DigestMismatch: {mismatch}" in state.items[0].details


def test_a_missing_model_fails_the_endpoint_that_needs_it() -> None:
    state = assess(stack(), {ENDPOINT_KEY: obj(ENDPOINT, "chat")}, timed_out=False)
    assert by_label(state)["endpoint/chat"] == (Phase.FAILED, "ModelNotReady")
    assert state.items[0].details == ("Model smol does not exist",)


def test_a_crashing_replica_keeps_the_wait_going_until_the_timeout() -> None:
    crash = {
        "name": "default.chat.smol.0",
        "state": "CrashLoopBackOff",
        "ready": False,
        "restarts": 2,
        "lastExitCode": 2,
        "message": "exited with code 2",
        "lastLogLines": ["error: unrecognized arguments: --bogus 1"],
    }
    endpoint = obj(
        ENDPOINT,
        "chat",
        replicas=[crash],
        readyReplicas=0,
        desiredReplicas=1,
        conditions=[condition("Ready", "False", "CrashLoopBackOff", "default.chat.smol.0: exited")],
    )
    objects = {MODEL_KEY: ready_model(), ENDPOINT_KEY: endpoint}
    waiting = assess(stack(), objects, timed_out=False)
    assert by_label(waiting)["endpoint/chat"] == (
        Phase.WAITING,
        "0/1 replicas ready (CrashLoopBackOff)",
    )
    assert not waiting.settled

    late = assess(stack(), objects, elapsed_s=300, timed_out=True)
    assert late.settled
    failed = late.items[1]
    assert failed.phase is Phase.FAILED
    assert failed.details[0] == "not ready after 300 s (0/1 replicas ready (CrashLoopBackOff))"
    report = "\n".join(
        line.plain for line in outcome_lines(late, None, url="U", base_url="U/v1", state_dir=DIR)
    )
    assert "replica default.chat.smol.0: CrashLoopBackOff (exit code 2, 2 restart(s))" in report
    assert "      | error: unrecognized arguments: --bogus 1" in report
    assert "corral keeps serving at U" in report


def test_a_ready_condition_from_an_older_generation_does_not_count() -> None:
    stale = obj(
        ENDPOINT,
        "chat",
        generation=2,
        observed=1,
        conditions=[condition("Ready", "True", "Serving")],
    )
    state = assess(stack(), {MODEL_KEY: ready_model(), ENDPOINT_KEY: stale}, timed_out=False)
    assert by_label(state)["endpoint/chat"][0] is Phase.WAITING


def test_a_ready_endpoint_settles_the_stack_and_says_how_to_call_it() -> None:
    endpoint = obj(
        ENDPOINT,
        "chat",
        readyReplicas=1,
        desiredReplicas=1,
        conditions=[condition("Ready", "True", "Serving")],
    )
    state = assess(stack(), {MODEL_KEY: ready_model(), ENDPOINT_KEY: endpoint}, timed_out=False)
    assert state.settled
    report = [
        line.plain
        for line in outcome_lines(
            state, None, url="http://h:1", base_url="http://h:1/v1", state_dir=DIR
        )
    ]
    assert "✓ endpoint/chat is ready: 1/1 replica(s) serving" in report
    assert '    -H "Authorization: Bearer $(cat /srv/corral/admin.token)" \\' in report


def test_snippets_name_the_endpoint_and_state_dir_when_not_the_defaults() -> None:
    lines = how_to_call(Target(ENDPOINT, "team-a", "summarize"), "http://h:1/v1", DIR)
    assert "  corral chat team-a/summarize --state-dir /srv/corral" in lines
    assert "  curl -s http://h:1/v1/chat/completions \\" in lines
    assert '  client = OpenAI(base_url="http://h:1/v1",' in lines


def test_an_endpoint_no_device_could_ever_hold_fails_at_once() -> None:
    never = "needs 90.0 GiB; the largest device of class 'gpu' has 80.0 GiB (big/gpu0)"
    endpoint = obj(
        ENDPOINT,
        "chat",
        conditions=[condition("Ready", "False", "NoDeviceClassFits", never)],
    )
    state = assess(stack(), {MODEL_KEY: ready_model(), ENDPOINT_KEY: endpoint}, timed_out=False)
    assert state.settled
    assert by_label(state)["endpoint/chat"] == (Phase.FAILED, "NoDeviceClassFits")
    assert f"Ready=False NoDeviceClassFits: {never}" in state.items[-1].details
