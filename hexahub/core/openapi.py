"""The OpenAPI document (/openapi.json), made to say what the server really answers.

Routes declare what is particular to them: summaries, request and response models with
their constraints, and the statuses only they answer. What every route shares is added
here, in one place, following the rules the code itself follows:

- an operation that needs credentials (it lists `security`) may answer 401 and 403;
- one whose path names something may answer 404 (it does not exist, or the caller may
  not know that it does);
- one that reads a JSON body may answer 400 (not JSON) and 413 (larger than
  HEXAHUB_MAX_REQUEST_BODY_BYTES);
- one with parameters or a body may answer 422, in our error shape rather than FastAPI's
  `{"detail": [...]}`;
- every operation the rate limiter watches may answer 429, with `Retry-After`;
- every error status has a body schema: `ErrorBody` (`{"error": {"code", "message"}}`),
  or the one the route's class names in `error_model` (the gateway's OpenAI and
  Anthropic shapes under /v1).

Routes may document a body they read themselves (the /v1 APIs forward unknown fields, so
they parse by hand) with `openapi_extra=json_body(Model)`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hexahub.core.errors import ErrorBody

REF = "#/components/schemas/{model}"
# Carries a documented body's named schemas from json_body() to the components section.
_COMPONENTS_KEY = "x-hexahub-components"

DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "Not signed in, or the credentials are not valid",
    403: "Signed in, but not allowed to do this (the attempt is audited)",
    404: "Not found, or not visible to the caller",
    413: "The request body is larger than the configured limit",
    422: "The request is malformed; the message names the field",
    429: "A rate limit was reached; retry after `Retry-After` seconds",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}
# One event of a `text/event-stream` answer, as OpenAPI 3.2 models events (in 3.1 the
# schema of an event stream describes each event).
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "description": "JSON, or OpenAI's closing `[DONE]`"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
# For patterns: the characters Python counts as white space (str.strip, str.split, and
# `\s` in Python's re), which the services trim. JSON Schema's `\s` is JavaScript's,
# which differs (it leaves out \x1c-\x1f and \x85, and takes \ufeff).
SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# For `Field(json_schema_extra=...)`, where a service function checks the rule (with a
# message of its own) and the document should state it too: text that is not only spaces.
# Said as "not blank", since a pattern of the allowed characters leaves fuzzers unable to
# draw the over-long values that test the length limit.
NOT_BLANK: dict[str, Any] = {
    "minLength": 1,
    "not": {"type": "string", "pattern": f"^[{SPACE}]*$"},
}
# FastAPI's own 422 body, which our handler never sends.
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself: documents `model` as
    the body without FastAPI validating it."""
    schema = model.model_json_schema(ref_template=REF)
    components = schema.pop("$defs", {})
    components[model.__name__] = schema
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        },
        _COMPONENTS_KEY: components,
    }


def install_openapi(app: FastAPI, *, unlimited_paths: Collection[str] = ()) -> None:
    """Serve the completed document at /openapi.json. Paths in `unlimited_paths` are
    exempt from rate limits, so they are not documented with 429."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            complete(document, app.routes, unlimited_paths)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], routes: list[Any], unlimited_paths: Collection[str]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    error_refs: dict[type[BaseModel], dict[str, str]] = {}

    def error_ref(model: type[BaseModel]) -> dict[str, str]:
        if model not in error_refs:
            _add_models(components, model)
            error_refs[model] = {"$ref": REF.format(model=model.__name__)}
        return error_refs[model]

    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        operations = document["paths"].get(route.path_format, {})
        for method in (route.methods or set()) - {"HEAD"}:
            operation = operations.get(method.lower())
            if operation is None:
                continue
            components.update(operation.pop(_COMPONENTS_KEY, {}))
            model = getattr(route.original_route, "error_model", ErrorBody)
            _add_statuses(operation, limited=route.path_format not in unlimited_paths)
            _shape_errors(operation, error_ref(model))
    for name in _FASTAPI_VALIDATION:
        if not _mentions(document["paths"], REF.format(model=name)):
            components.pop(name, None)


def _add_models(components: dict[str, Any], *models: type[BaseModel]) -> None:
    _, schema = models_json_schema([(m, "serialization") for m in models], ref_template=REF)
    components.update(schema.get("$defs", {}))


def _add_statuses(operation: dict[str, Any], *, limited: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted: list[int] = []
    if operation.get("security"):
        wanted += [401, 403]
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        wanted.append(404)
    body = operation.get("requestBody")
    if body is not None and "application/json" in body.get("content", {}):
        wanted += [400, 413]
    if parameters or body is not None:
        wanted.append(422)
    if limited:
        wanted.append(429)
    for status in wanted:
        responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
    if "429" in responses:
        responses["429"].setdefault("headers", RETRY_AFTER)


def _shape_errors(operation: dict[str, Any], ref: dict[str, str]) -> None:
    """Give each error response without a body schema (or with FastAPI's 422 one) ours."""
    for status, response in operation.get("responses", {}).items():
        if not status.isdigit() or int(status) < 400:
            continue
        content = response.setdefault("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        if not schema or schema.get("$ref", "").endswith(_FASTAPI_VALIDATION):
            content["application/json"] = {"schema": ref}
        if response.get("description") in (None, "", "Validation Error"):
            response["description"] = DESCRIPTIONS.get(int(status), "An error")


def _mentions(value: Any, ref: str) -> bool:
    if isinstance(value, dict):
        return value.get("$ref") == ref or any(_mentions(v, ref) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, ref) for v in value)
    return False
