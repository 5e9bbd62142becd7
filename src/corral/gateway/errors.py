"""OpenAI-shaped errors: what any stage raises to refuse a request.

A stage raises ``GatewayError``; the ASGI app turns it into
``{"error": {"message", "type", "param", "code"}}`` with the status and headers it carries, so
OpenAI client libraries map it onto their own exception classes. Client mistakes are 4xx with
type ``invalid_request_error``; only upstream trouble is 5xx (type ``server_error``).
"""

from __future__ import annotations

import orjson

from corral.gateway.transport import Headers


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or []

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )


def unauthorized(message: str) -> GatewayError:
    return GatewayError(
        401, message, code="invalid_api_key", headers=[(b"www-authenticate", b"Bearer")]
    )


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model {model!r} does not exist: name an Endpoint as 'name' (namespace default) "
        "or 'namespace/name'",
        code="model_not_found",
        param="model",
    )


def payload_too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"request body is larger than the limit of {limit} bytes", code="request_too_large"
    )


def no_ready_replica(reason: str, retry_after_seconds: int) -> GatewayError:
    return GatewayError(
        503,
        reason,
        type="server_error",
        code="no_ready_replica",
        headers=[(b"retry-after", str(retry_after_seconds).encode())],
    )


def bad_gateway(message: str) -> GatewayError:
    return GatewayError(502, message, type="server_error", code="upstream_unavailable")


def gateway_timeout(message: str) -> GatewayError:
    return GatewayError(504, message, type="server_error", code="upstream_timeout")
