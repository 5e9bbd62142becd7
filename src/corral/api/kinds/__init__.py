"""The built-in kinds. Importing this package registers them all."""

from corral.api.kinds import apikey, endpoint, lease, model, namespace, policy, secret, team

__all__ = ["apikey", "endpoint", "lease", "model", "namespace", "policy", "secret", "team"]
