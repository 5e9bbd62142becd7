"""The usage extension: one usage record per gateway request (tokens, cost, who, which model).

Being built; until then the extension takes part in nothing.
"""

from __future__ import annotations

from corral.server.extensions import Extension


class UsageExtension(Extension):
    name = "usage"
