"""What cannot start becomes a Failed replica with a clear message, never an exception or a hang."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from corral.runtimes import (
    LlamaCppProvider,
    ProcessPlan,
    ReplicaSpec,
    ReplicaState,
    ReplicaStatus,
    Supervisor,
    UpstreamPlan,
)

from .helpers import QUICK, Recorder, fake_providers, replica_spec, wait_for


class _BrokenProvider:
    type = "broken"

    def plan(self, spec: ReplicaSpec, port: int, /) -> ProcessPlan | UpstreamPlan:
        raise RuntimeError(f"cannot plan {spec.name} on {port}")


def _failed(message_part: str) -> Callable[[ReplicaStatus], bool]:
    return lambda s: s.state is ReplicaState.FAILED and message_part in s.message


@pytest.fixture
async def odd_supervisor(tmp_path: Path, recorder: Recorder) -> AsyncIterator[Supervisor]:
    providers = {
        **fake_providers(),
        "missing-launcher": LlamaCppProvider(launcher=(str(tmp_path / "no-such-server"),)),
        "broken": _BrokenProvider(),
    }
    sup = Supervisor(tmp_path / "state", recorder, providers=providers, settings=QUICK)
    yield sup
    await sup.stop_all()


async def test_missing_model_file_fails_the_replica(supervisor: Supervisor, tmp_path: Path) -> None:
    spec = replica_spec(tmp_path / "absent.gguf")
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, _failed("model file not found"))

    assert status.message == f"model file not found: {tmp_path / 'absent.gguf'}"
    assert not status.ready
    assert status.pid is None


async def test_missing_launcher_binary_fails_the_replica(
    odd_supervisor: Supervisor, model_file: Path, tmp_path: Path
) -> None:
    spec = replica_spec(model_file, runtime="missing-launcher")
    await odd_supervisor.ensure({spec.name: spec})

    status = await wait_for(odd_supervisor, spec.name, _failed("launcher not found"))

    assert str(tmp_path / "no-such-server") in status.message


async def test_vllm_not_on_path_fails_the_replica(
    supervisor: Supervisor, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = replica_spec(model_file, runtime="vllm")
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, _failed("vLLM is not installed"))

    assert "'vllm' not found on PATH" in status.message


async def test_unknown_runtime_type_fails_the_replica(
    supervisor: Supervisor, model_file: Path
) -> None:
    spec = replica_spec(model_file, runtime="tgi")
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, _failed("unknown runtime type"))

    assert status.message == "unknown runtime type 'tgi' (known: llamacpp, openai, vllm)"


async def test_option_owned_by_the_supervisor_fails_the_replica(
    supervisor: Supervisor, model_file: Path
) -> None:
    spec = replica_spec(model_file, options={"port": 9999})
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, _failed("option"))

    assert status.message == "option 'port' is set by corral and cannot be overridden"


async def test_provider_bug_fails_the_replica_not_the_supervisor(
    odd_supervisor: Supervisor, model_file: Path
) -> None:
    broken = replica_spec(model_file, runtime="broken", name="default.chat.broken.0")
    healthy = replica_spec(model_file)
    await odd_supervisor.ensure({broken.name: broken, healthy.name: healthy})

    status = await wait_for(odd_supervisor, broken.name, _failed("runtime provider"))
    await wait_for(odd_supervisor, healthy.name, lambda s: s.ready)

    assert status.message.startswith("runtime provider 'broken' failed: RuntimeError(")


async def test_unrunnable_executable_fails_the_replica(
    tmp_path: Path, model_file: Path, recorder: Recorder
) -> None:
    launcher = tmp_path / "server"
    launcher.write_text("#!/no/such/interpreter\n")
    launcher.chmod(0o755)
    providers = {"llamacpp": LlamaCppProvider(launcher=(str(launcher),))}
    async with Supervisor(tmp_path / "state", recorder, providers=providers, settings=QUICK) as sup:
        spec = replica_spec(model_file)
        await sup.ensure({spec.name: spec})

        status = await wait_for(sup, spec.name, _failed("cannot start"))

    assert status.message == f"cannot start {launcher}: No such file or directory"


async def test_failed_replica_recovers_once_the_problem_is_fixed(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    late_file = tmp_path / "late.gguf"
    spec = replica_spec(late_file)
    await supervisor.ensure({spec.name: spec})
    await wait_for(supervisor, spec.name, _failed("model file not found"))

    late_file.write_bytes(b"GGUF arrived")

    status = await wait_for(supervisor, spec.name, lambda s: s.ready)
    assert status.restarts == 0


async def test_mismatched_desired_key_is_refused(supervisor: Supervisor, model_file: Path) -> None:
    spec = replica_spec(model_file)

    with pytest.raises(ValueError, match=r"differs from spec\.name"):
        await supervisor.ensure({"other": spec})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "../escape"}, "replica name '../escape'"),
        ({"name": "a/b"}, "replica name 'a/b'"),
        ({"model": ""}, "model must not be empty"),
        ({"options": {"n ctx": 1}}, "option 'n ctx' must be letters"),
        ({"options": {"stop": ["x"]}}, "option 'stop' must be a string, number or boolean"),
        ({"options": {"temp": float("nan")}}, "option 'temp' must be a finite number"),
        ({"env": {"1BAD": "x"}}, "env '1BAD' must be a variable name"),
        ({"readiness_timeout": 0}, "readiness_timeout must be above 0"),
    ],
)
def test_bad_replica_spec_is_refused_with_a_clear_message(
    changes: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "name": "default.chat.m.0",
        "namespace": "default",
        "endpoint": "chat",
        "model": "m",
        "runtime": "llamacpp",
        **changes,
    }

    with pytest.raises(ValueError, match=re.escape(message)):
        ReplicaSpec(**fields)  # type: ignore[arg-type]


def test_spec_copies_its_options_so_later_edits_do_not_leak_in() -> None:
    options: dict[str, str | int | float | bool] = {"n_ctx": 512}
    spec = ReplicaSpec(
        name="default.chat.m.0",
        namespace="default",
        endpoint="chat",
        model="m",
        runtime="llamacpp",
        options=options,
        api_key="sk-secret",
    )

    options["n_ctx"] = 4096

    assert spec.options == {"n_ctx": 512}
    assert "sk-secret" not in repr(spec)
    assert "default.chat.m.0" in repr(spec)
