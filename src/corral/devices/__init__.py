"""Accelerator devices: DRA-style selection, allocation, quotas and preemption.

A library that sits on ``corral.api`` only (like ``corral.policy``): it never imports the store,
the servers, the controllers or the gateway.
"""
