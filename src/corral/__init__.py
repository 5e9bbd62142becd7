"""corral: a control plane and runtime for AI models and agents.

The package is layered (see DESIGN.md §2): ``api`` (schemas) ← ``store`` (persistence)
← ``apiserver`` / ``controlplane`` / ``controllers`` ← ``server`` (composition) and ``cli``.
"""

__version__ = "0.1.0"
