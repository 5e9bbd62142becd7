"""The gateway's OpenAPI 3.1 document, served at ``GET /v1/openapi.json`` without auth.

It describes the OpenAI-compatible surface the gateway answers (``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings``, ``/v1/models``, ``/v1/models/{model}``): the request
fields corral reads or that OpenAI clients commonly send, the answers, and every error status
the gateway itself produces, all in OpenAI's error shape. Requests are open objects
(``additionalProperties``): the gateway passes fields it does not know through to the upstream,
as OpenAI-compatible servers differ in the extensions they take. Tools (client generators,
schemathesis in the test suite) read it; the gateway itself validates only what it must
(the body is a JSON object with a ``model`` naming an Endpoint).

The document is built once at import and serialised once: serving it costs a send.
"""

from __future__ import annotations

from typing import Any

import orjson

OPENAPI_PATH = "/v1/openapi.json"

_JSON = "application/json"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ERROR_REF}}}


def _retry_after_error(description: str) -> dict[str, Any]:
    return {
        **_error(description),
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "string"},
            }
        },
    }


_AUTH_ERRORS = {"401": _error("missing or invalid credential (API key or workload token)")}
_INFERENCE_ERRORS: dict[str, Any] = {
    "400": _error("malformed request: not a JSON object, invalid UTF-8, no model, ..."),
    **_AUTH_ERRORS,
    "403": _error("denied by policy or refused by a guardrail"),
    "404": _error("no Endpoint of that name (code model_not_found)"),
    "408": _error("the request body did not arrive in time"),
    "413": _error("the request body is larger than the gateway's limit"),
    "429": _retry_after_error("a rate limit or a hard budget is exhausted"),
    "502": _error("every upstream try failed"),
    "503": _retry_after_error("no ready replica for the Endpoint"),
    "504": _error("the upstream did not answer in time"),
}

_STRING_OR_STRINGS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_SAMPLING: dict[str, Any] = {
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 128},
    "max_tokens": {"type": ["integer", "null"], "minimum": 1},
    "stop": {"anyOf": [{"type": "null"}, _STRING_OR_STRINGS]},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "seed": {"type": ["integer", "null"]},
    "user": {"type": "string", "description": "end-user id; also keeps a session's version"},
    "stream": {"type": ["boolean", "null"], "description": "answer as server-sent events"},
    "stream_options": {
        "type": ["object", "null"],
        "properties": {"include_usage": {"type": "boolean"}},
    },
}
_MODEL = {
    "type": "string",
    "minLength": 1,
    "description": "the Endpoint: 'name' (namespace default) or 'namespace/name'",
}
_USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        },
    },
    "ErrorResponse": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"$ref": "#/components/schemas/Error"}},
    },
    "ChatMessage": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {
                "type": "string",
                "enum": ["system", "developer", "user", "assistant", "tool"],
            },
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "null"},
                    {"type": "array", "items": {"type": "object"}},
                ]
            },
            "name": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
            "tool_call_id": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": _MODEL,
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/ChatMessage"},
            },
            **_SAMPLING,
            "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
            "tools": {"type": "array", "items": {"type": "object"}},
            "tool_choice": {"anyOf": [{"type": "string"}, {"type": "object"}]},
            "response_format": {"type": "object"},
            "logprobs": {"type": ["boolean", "null"]},
        },
        "additionalProperties": True,
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["object", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": _USAGE,
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": _MODEL,
            "prompt": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "array", "items": {"type": "integer"}},
                    {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
                ]
            },
            **_SAMPLING,
            "echo": {"type": ["boolean", "null"]},
            "suffix": {"type": ["string", "null"]},
            "logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 5},
        },
        "additionalProperties": True,
    },
    "Completion": {
        "type": "object",
        "required": ["object", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": _USAGE,
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": _MODEL,
            "input": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "array", "items": {"type": "integer"}},
                    {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
                ]
            },
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
            "user": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"type": "string"},
            "data": {"type": "array", "items": {"type": "object"}},
            "model": {"type": "string"},
            "usage": _USAGE,
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"type": "string", "const": "list"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
        },
    },
}


def _inference(summary: str, request: str, answer: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": request[0].lower() + request[1:].removesuffix("Request"),
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{request}"}}},
            },
            "responses": {
                "200": {
                    "description": "the upstream's answer (server-sent events when streamed)",
                    "content": {
                        _JSON: {"schema": {"$ref": f"#/components/schemas/{answer}"}},
                        "text/event-stream": {
                            "schema": {
                                "description": "'data: <JSON chunk>' events, then 'data: [DONE]'"
                            }
                        },
                    },
                },
                **_INFERENCE_ERRORS,
            },
        }
    }


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "corral gateway",
        "version": "v1",
        "description": (
            "The OpenAI-compatible API of the corral gateway. Authenticate with "
            "'Authorization: Bearer <API key, workload token or admin token>'. Errors are "
            '{"error": {"message", "type", "param", "code"}}.'
        ),
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/chat/completions": _inference(
            "Chat completion", "ChatCompletionRequest", "ChatCompletion"
        ),
        "/v1/completions": _inference("Text completion", "CompletionRequest", "Completion"),
        "/v1/embeddings": _inference("Embeddings", "EmbeddingRequest", "EmbeddingList"),
        "/v1/models": {
            "get": {
                "summary": "The Endpoints callers may name as model",
                "operationId": "listModels",
                "responses": {
                    "200": {
                        "description": "the model list",
                        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ModelList"}}},
                    },
                    **_AUTH_ERRORS,
                },
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "One Endpoint as a model",
                "operationId": "retrieveModel",
                "parameters": [
                    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "the model",
                        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Model"}}},
                    },
                    **_AUTH_ERRORS,
                    "404": _error("no Endpoint of that name (code model_not_found)"),
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": _SCHEMAS,
    },
}
"""The OpenAPI 3.1 document (do not mutate: ``DOCUMENT_JSON`` is serialised from it once)."""

DOCUMENT_JSON = orjson.dumps(DOCUMENT)
