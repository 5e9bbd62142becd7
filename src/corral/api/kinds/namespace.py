"""``Namespace``: the cluster-scoped grouping every namespaced object lives in."""

from corral.api.registry import KindInfo, register_kind

NAMESPACE = register_kind(
    KindInfo(
        kind="Namespace",
        plural="namespaces",
        spec_model=None,
        namespaced=False,
        short_names=("ns",),
        description="A grouping of namespaced objects; 'default' always exists.",
    )
)
