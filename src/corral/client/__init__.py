"""The HTTP client: how the CLI and scripts talk to a corral server.

It imports only ``corral.api`` (schemas and errors); errors come back as the same typed
:class:`~corral.api.errors.ApiError` subclasses the server raised.
"""

from corral.client.discovery import (
    Connection,
    read_server_info,
    remove_server_info,
    resolve_connection,
    state_dir_path,
    write_server_info,
)
from corral.client.errors import NoServerFound, ServerUnreachable
from corral.client.http import CorralClient, ObjectList, resolve_kind

__all__ = [
    "Connection",
    "CorralClient",
    "NoServerFound",
    "ObjectList",
    "ServerUnreachable",
    "read_server_info",
    "remove_server_info",
    "resolve_connection",
    "resolve_kind",
    "state_dir_path",
    "write_server_info",
]
