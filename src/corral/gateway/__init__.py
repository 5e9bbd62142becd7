"""The OpenAI-compatible gateway: a raw ASGI request path composed of small stages.

    routes = RouteSource(RouteTable.from_endpoints(endpoint_objects, api_keys))
    app = create_gateway(routes, authenticate=lambda token: token == admin_token)
    uvicorn.Server(gateway_server_config(app, port=8080)).run()
    routes.update(RouteTable.from_endpoints(...))  # whenever Endpoints or Secrets change

It sits on ``corral.api`` only; the composition root feeds it routes (``corral.server``'s route
feed, from the store's watch) and mounts it at the root (it serves ``/v1/...`` itself).
"""

from corral.gateway.app import Gateway, create_gateway
from corral.gateway.balancer import Balancer
from corral.gateway.call import OPERATIONS, Call, Handler, ResponseHook, Stage
from corral.gateway.errors import GatewayError
from corral.gateway.forward import FALLBACK_HEADER, SESSION_HEADER
from corral.gateway.http1 import HttpTransport
from corral.gateway.resilience import RoutingPolicy
from corral.gateway.routes import (
    API_PREFIX,
    EndpointRoute,
    RouteSource,
    RouteTable,
    VersionRoute,
    compile_endpoint,
)
from corral.gateway.server import gateway_server_config
from corral.gateway.transport import (
    Headers,
    UpstreamError,
    UpstreamResponse,
    UpstreamTransport,
    UpstreamUnreachable,
)

__all__ = [
    "API_PREFIX",
    "FALLBACK_HEADER",
    "OPERATIONS",
    "SESSION_HEADER",
    "Balancer",
    "Call",
    "EndpointRoute",
    "Gateway",
    "GatewayError",
    "Handler",
    "Headers",
    "HttpTransport",
    "ResponseHook",
    "RouteSource",
    "RouteTable",
    "RoutingPolicy",
    "Stage",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTransport",
    "UpstreamUnreachable",
    "VersionRoute",
    "compile_endpoint",
    "create_gateway",
    "gateway_server_config",
]
