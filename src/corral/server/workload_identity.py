"""The workload-identity extension: platform-signed workload JWTs, their keys and the JWKS.

Being built; until then the extension takes part in nothing.
"""

from __future__ import annotations

from corral.server.extensions import Extension


class WorkloadIdentity(Extension):
    name = "workload-identity"
