"""The guardrails extension: input and output scanners per Endpoint.

Being built; until then the extension takes part in nothing.
"""

from __future__ import annotations

from corral.server.extensions import Extension


class GuardrailsExtension(Extension):
    name = "guardrails"
