"""The ``openai`` runtime: an external OpenAI-compatible upstream, not a process of ours.

Nothing is started; the supervisor repeats ``GET {base_url}/models`` with the API key and
reports the replica Ready while that answers 200. ``base_url`` includes the API prefix
(``https://api.example.com/v1``), as OpenAI clients spell it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from corral.runtimes.providers import LaunchError, UpstreamPlan
from corral.runtimes.spec import ReplicaSpec


class OpenAIUpstreamProvider:
    type = "openai"

    def plan(self, spec: ReplicaSpec, _port: int, /) -> UpstreamPlan:
        if not spec.base_url:
            raise LaunchError("the openai runtime needs a base URL (spec.runtime.baseURL)")
        parts = urlsplit(spec.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LaunchError(f"base URL {spec.base_url!r} must be an absolute http(s) URL")
        base_url = spec.base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        return UpstreamPlan(
            base_url=base_url, health_url=f"{base_url}/models", health_headers=headers
        )
