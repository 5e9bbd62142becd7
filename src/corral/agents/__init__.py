"""The durable agent session runtime (issue 5): sessions are event-sourced journals.

Flow: the sessions API (server) calls :class:`~corral.agents.runtime.AgentRuntime`; the runtime
folds a session's journal (:mod:`corral.agents.events`) into state, the orchestration decides
the next step from it alone, and the executor runs model and tool calls through the seams in
:mod:`corral.agents.seams`, journaling each result (through :mod:`corral.agents.journal`,
implemented in ``corral.store.session_journal``) before the session moves on.
"""
