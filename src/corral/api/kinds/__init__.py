"""The built-in kinds. Importing this package registers them all."""

from corral.api.kinds import endpoint, lease, model, namespace, policy, secret

__all__ = ["endpoint", "lease", "model", "namespace", "policy", "secret"]
