"""``Lease``: who leads a controller now; written by leader election, read by humans.

Leader election is ordinary optimistic concurrency on this object, so it works the same on
every store backend (Kubernetes' coordination.k8s.io Lease, same fields).
"""

from pydantic import BaseModel, ConfigDict, Field

from corral.api.registry import KindInfo, register_kind


class LeaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holderIdentity: str = ""
    leaseDurationSeconds: int = Field(default=10, ge=1, le=3600)
    acquireTime: str = ""
    renewTime: str = ""
    leaseTransitions: int = Field(default=0, ge=0)


LEASE = register_kind(
    KindInfo(
        kind="Lease",
        plural="leases",
        spec_model=LeaseSpec,
        short_names=("lease",),
        description="A leader-election lease.",
        printer_columns=(("HOLDER", "spec.holderIdentity"), ("RENEWED", "spec.renewTime")),
        # A renewal every 2 s is a heartbeat, not a change of intent: history would only grow.
        record_history=False,
    )
)
