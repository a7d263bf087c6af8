"""The OpenAPI document as the API really answers: every error is ``application/problem+json`` (a Problem)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from controller.api.errors import Problem, problem_response_spec

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


def problem_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with its default 422 (HTTPValidationError) replaced by Problem responses."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if operation.get("parameters") or operation.get("requestBody"):
                responses["422"] = problem_response_spec(422, "1 invalid value in the request")
            if operation.get("requestBody"):
                responses.setdefault("413", problem_response_spec(413, "Content Too Large"))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = document
    return document


def install_problem_openapi(app: FastAPI) -> None:
    """Serve :func:`problem_openapi` as the app's OpenAPI document."""
    app.openapi = lambda: problem_openapi(app)  # type: ignore[method-assign]
