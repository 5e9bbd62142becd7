"""The audit extension: the tamper-evident audit log of governance decisions and control-plane
writes.

Being built; until then the extension takes part in nothing.
"""

from __future__ import annotations

from corral.server.extensions import Extension


class AuditExtension(Extension):
    name = "audit"
