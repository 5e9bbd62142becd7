"""The rate-limits extension: requests per minute, tokens per minute and concurrent requests per
RateLimit.

Being built; until then the extension takes part in nothing.
"""

from __future__ import annotations

from corral.server.extensions import Extension


class RateLimitExtension(Extension):
    name = "rate-limits"
