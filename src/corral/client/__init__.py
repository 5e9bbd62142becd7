"""The HTTP client: how the CLI and scripts talk to a corral server and its gateway.

It imports only ``corral.api`` (schemas and errors); errors come back as the same typed
:class:`~corral.api.errors.ApiError` subclasses the server raised, and the gateway's OpenAI
errors as :class:`CompletionError`.
"""

from corral.client.chat import ChatMessage, ChatStream, GatewayClient, openai_base_url
from corral.client.discovery import (
    Connection,
    read_server_info,
    remove_server_info,
    resolve_connection,
    state_dir_path,
    write_server_info,
)
from corral.client.errors import (
    CompletionError,
    IncompleteStream,
    NoServerFound,
    ServerUnreachable,
)
from corral.client.http import CorralClient, ObjectList, resolve_kind
from corral.client.sse import SseEvent, iter_sse

__all__ = [
    "ChatMessage",
    "ChatStream",
    "CompletionError",
    "Connection",
    "CorralClient",
    "GatewayClient",
    "IncompleteStream",
    "NoServerFound",
    "ObjectList",
    "ServerUnreachable",
    "SseEvent",
    "iter_sse",
    "openai_base_url",
    "read_server_info",
    "remove_server_info",
    "resolve_connection",
    "resolve_kind",
    "state_dir_path",
    "write_server_info",
]
