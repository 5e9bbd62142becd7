"""Providers render each runtime's command line (or upstream check) from a replica spec."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

from corral.runtimes import (
    LaunchError,
    LlamaCppProvider,
    OpenAIUpstreamProvider,
    ProcessPlan,
    ReplicaSpec,
    RuntimeOption,
    UpstreamPlan,
    VllmProvider,
    register_provider,
    registered_providers,
)


def _spec(runtime: str, options: dict[str, RuntimeOption], **extra: object) -> ReplicaSpec:
    fields: dict[str, object] = {
        "name": "default.chat.smollm2.0",
        "namespace": "default",
        "endpoint": "chat",
        "model": "smollm2",
        "runtime": runtime,
        "options": options,
        **extra,
    }
    return ReplicaSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    executable = tmp_path / "bin" / "vllm"
    executable.parent.mkdir()
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    monkeypatch.setenv("PATH", str(executable.parent))
    return executable


def test_llamacpp_command_puts_options_in_llamacpp_spelling_after_managed_ones(
    model_file: Path,
) -> None:
    spec = _spec(
        "llamacpp",
        {"n_ctx": 512, "chat-format": "chatml-function-calling", "verbose": False, "rope": 0.5},
        model_path=str(model_file),
        env={"OMP_NUM_THREADS": "2"},
    )

    plan = LlamaCppProvider().plan(spec, 8123)

    assert isinstance(plan, ProcessPlan)
    assert plan.argv == (
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_file),
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--model_alias",
        "smollm2",
        "--interrupt_requests",
        "false",
        "--n_ctx",
        "512",
        "--chat_format",
        "chatml-function-calling",
        "--verbose",
        "false",
        "--rope",
        "0.5",
    )
    assert plan.health_path == "/v1/models"
    assert plan.env == {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    assert plan.health_headers == {}


def test_llamacpp_options_parse_with_the_servers_own_parser(model_file: Path) -> None:
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    spec = _spec(
        "llamacpp",
        {"n_ctx": 512, "verbose": False, "embedding": True, "chat_format": "chatml", "seed": 7},
        model_path=str(model_file),
    )
    plan = LlamaCppProvider().plan(spec, 8123)
    parser = argparse.ArgumentParser()
    add_args_from_model(parser, Settings)

    args = parser.parse_args(list(plan.argv[3:]))
    model = parse_model_from_args(ModelSettings, args)
    server = parse_model_from_args(ServerSettings, args)

    assert (model.n_ctx, model.verbose, model.embedding) == (512, False, True)
    assert (model.chat_format, model.seed, model.model_alias) == ("chatml", 7, "smollm2")
    assert (server.host, server.port) == ("127.0.0.1", 8123)
    # Concurrent clients queue instead of cutting each other's streams short.
    assert server.interrupt_requests is False


def test_llamacpp_interrupt_requests_can_be_turned_back_on(model_file: Path) -> None:
    spec = _spec("llamacpp", {"interrupt_requests": True}, model_path=str(model_file))
    argv = LlamaCppProvider().plan(spec, 8123).argv
    assert argv.count("--interrupt_requests") == 1
    assert argv[argv.index("--interrupt_requests") + 1] == "true"


def test_llamacpp_keeps_a_model_alias_and_probes_with_the_api_key(model_file: Path) -> None:
    spec = _spec(
        "llamacpp", {"model_alias": "mine", "api_key": "sk-local"}, model_path=str(model_file)
    )

    plan = LlamaCppProvider().plan(spec, 8123)

    assert plan.argv.count("--model_alias") == 1
    assert plan.argv[plan.argv.index("--model_alias") + 1] == "mine"
    assert plan.health_headers == {"Authorization": "Bearer sk-local"}


def test_llamacpp_needs_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="needs a local GGUF file"):
        LlamaCppProvider().plan(_spec("llamacpp", {}), 8123)
    with pytest.raises(LaunchError, match="model file not found"):
        LlamaCppProvider().plan(_spec("llamacpp", {}, model_path=str(tmp_path)), 8123)


@pytest.mark.parametrize("key", ["port", "host", "model"])
def test_llamacpp_refuses_options_the_supervisor_sets(model_file: Path, key: str) -> None:
    spec = _spec("llamacpp", {key: "x"}, model_path=str(model_file))

    with pytest.raises(LaunchError, match=f"option '{key}' is set by corral"):
        LlamaCppProvider().plan(spec, 8123)


def test_vllm_command_uses_vllm_spelling(fake_vllm: Path, model_file: Path) -> None:
    spec = _spec(
        "vllm",
        {
            "max_model_len": 4096,
            "gpu-memory-utilization": 0.85,
            "enforce_eager": True,
            "enable_prefix_caching": False,
            "dtype": "auto",
        },
        model_path=str(model_file.parent),
        env={"CUDA_VISIBLE_DEVICES": "1"},
    )

    plan = VllmProvider().plan(spec, 9000)

    assert plan.argv == (
        str(fake_vllm),
        "serve",
        str(model_file.parent),
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--served-model-name",
        "smollm2",
        "--max-model-len",
        "4096",
        "--gpu-memory-utilization",
        "0.85",
        "--enforce-eager",
        "--no-enable-prefix-caching",
        "--dtype",
        "auto",
    )
    assert plan.health_path == "/health"
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "1"


@pytest.mark.usefixtures("fake_vllm")
def test_vllm_passes_hub_ids_through_and_checks_local_paths(tmp_path: Path) -> None:
    hub = VllmProvider().plan(_spec("vllm", {}, model_path="Qwen/Qwen2.5-0.5B-Instruct"), 9000)
    assert hub.argv[1:3] == ("serve", "Qwen/Qwen2.5-0.5B-Instruct")

    with pytest.raises(LaunchError, match="model path not found"):
        VllmProvider().plan(_spec("vllm", {}, model_path=str(tmp_path / "absent")), 9000)
    with pytest.raises(LaunchError, match="option 'port' is set by corral"):
        VllmProvider().plan(_spec("vllm", {"port": 1}, model_path="org/m"), 9000)


@pytest.mark.usefixtures("fake_vllm")
def test_vllm_keeps_a_served_model_name() -> None:
    spec = _spec("vllm", {"served-model-name": "public"}, model_path="org/m")

    plan = VllmProvider().plan(spec, 9000)

    assert plan.argv.count("--served-model-name") == 1
    assert plan.argv[plan.argv.index("--served-model-name") + 1] == "public"


def test_vllm_found_on_the_replicas_own_path(tmp_path: Path, fake_vllm: Path) -> None:
    spec = _spec("vllm", {}, model_path="org/m", env={"PATH": str(tmp_path)})

    with pytest.raises(LaunchError, match="not found on PATH"):
        VllmProvider().plan(spec, 9000)
    assert VllmProvider().plan(_spec("vllm", {}, model_path="org/m"), 9000).argv[0] == str(
        fake_vllm
    )


def test_openai_upstream_checks_models_with_the_key() -> None:
    spec = _spec("openai", {}, base_url="https://api.example.com/v1/", api_key="sk-up")

    plan = OpenAIUpstreamProvider().plan(spec, 0)

    assert plan == UpstreamPlan(
        base_url="https://api.example.com/v1",
        health_url="https://api.example.com/v1/models",
        health_headers={"Authorization": "Bearer sk-up"},
    )
    assert "sk-up" not in repr(plan)


@pytest.mark.parametrize(
    ("base_url", "message"),
    [(None, "needs a base URL"), ("api.example.com/v1", "absolute http(s) URL")],
)
def test_openai_upstream_needs_an_absolute_base_url(base_url: str | None, message: str) -> None:
    with pytest.raises(LaunchError, match=re.escape(message)):
        OpenAIUpstreamProvider().plan(_spec("openai", {}, base_url=base_url), 0)


def test_builtin_providers_are_registered_and_duplicates_refused() -> None:
    providers = registered_providers()

    assert {"llamacpp", "vllm", "openai"} <= providers.keys()
    with pytest.raises(ValueError, match="already has a provider"):
        register_provider(LlamaCppProvider())
    assert register_provider(providers["llamacpp"], replace=True) is providers["llamacpp"]
