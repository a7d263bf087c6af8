"""One error shape for every failure: RFC 9457 problem details (``application/problem+json``).

Inner exceptions stay specific (NotFoundError, ConflictError, InvalidOverride, ...); they become HTTP statuses here,
at the edge, with the message a user can act on. Invalid bodies list every problem with its field path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.api.auth import AuthError
from controller.overrides import InvalidOverride
from controller.repository import ConflictError, NotFoundError
from forecaster.types import ForecastError
from prewarm.db.store import InvalidSampleError, UnknownDeploymentError

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
MESSAGE_FIELD = re.compile(r"^([a-z][a-z0-9_]*) \(")


class FieldProblem(BaseModel):
    """One invalid value: where it is and what is wrong with it."""

    loc: list[str | int] = Field(description="Path to the value, e.g. ['body', 'policy', 'min_replicas'].")
    pointer: str = Field(
        description="JSON pointer into the request part named by loc[0], e.g. '/policy/min_replicas'."
    )
    message: str
    type: str = Field(description="Machine-readable kind of problem, e.g. 'greater_than_equal'.")


class Problem(BaseModel):
    """RFC 9457 problem details, with ``errors`` listing field problems for 422."""

    type: str = Field(default="about:blank", description="'about:blank': the status code says it all.")
    title: str = Field(description="Short summary of the status, e.g. 'Not Found'.")
    status: int
    detail: str | None = Field(default=None, description="What went wrong in this case and how to fix it.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldProblem] | None = None


def _example(status: int, detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    examples = {
        401: "this endpoint changes state: send 'Authorization: Bearer <admin token>'",
        403: "token of 'viewer' may read but not change; use an admin token",
        404: "unknown deployment 'digits'",
        409: "deployment 'digits' already exists; pick another name or delete it first",
        413: "Content Too Large",
        422: "1 invalid value in the request",
        503: "the forecaster is not available in this process",
    }
    return {status: problem_response_spec(status, examples.get(status, "")) for status in statuses}


def problem_response_spec(status: int, example_detail: str = "") -> dict[str, Any]:
    """One OpenAPI response whose body is a Problem (the schema is added to components by openapi.py)."""
    return {
        "description": HTTPStatus(status).phrase,
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "example": _example(status, example_detail),
            }
        },
    }


def problem_response(
    request: Request,
    status: int,
    detail: str | None,
    *,
    errors: list[FieldProblem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem-details response for ``request``."""
    body = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def field_problems(
    errors: Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = ()
) -> list[FieldProblem]:
    """Pydantic/FastAPI error dicts as field problems; ``prefix`` is prepended to each location."""
    problems = []
    for error in errors:
        loc = [*prefix, *(part if isinstance(part, int) else str(part) for part in error.get("loc", ()))]
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        context = error.get("ctx") or {}
        if error.get("type") == "json_invalid":
            loc = loc[:1]  # the position is in the message, not a field path
            message = f"invalid JSON at character {error.get('loc', (None, '?'))[-1]}: {context.get('error', message)}"
        elif error.get("type") == "value_error" and (named := MESSAGE_FIELD.match(message)):
            loc.append(named.group(1))  # a cross-field check ("max_replicas (2) must be ...") names its field
        pointer = "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc[1:])
        problems.append(
            FieldProblem(loc=loc, pointer=pointer, message=message, type=str(error.get("type", "")))
        )
    return problems


def _summary(problems: list[FieldProblem]) -> str:
    first = problems[0] if problems else None
    where = ".".join(str(part) for part in first.loc[1:]) if first else ""
    if first is None:
        head = "invalid request"
    elif where and not first.message.startswith(where.rsplit(".", 1)[-1]):
        head = f"{where}: {first.message}"
    else:
        head = first.message
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{head}{more}"


def install_error_handlers(app: FastAPI) -> None:
    """Make every error answer with problem details."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(request, exc.status_code, str(exc.detail), headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = field_problems(exc.errors())
        return problem_response(request, 422, _summary(problems), errors=problems)

    async def auth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        headers = {"WWW-Authenticate": 'Bearer realm="prewarm"'} if exc.status == 401 else None
        return problem_response(request, exc.status, exc.detail, headers=headers)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, 404, str(exc))

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, IntegrityError):
            logger.warning("integrity error on %s %s: %s", request.method, request.url.path, exc.orig)
            return problem_response(
                request, 409, "the change conflicts with the stored state; read it again and retry"
            )
        return problem_response(request, 409, str(exc))

    async def unprocessable(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, 422, str(exc))

    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("data error on %s %s: %s", request.method, request.url.path, getattr(exc, "orig", exc))
        return problem_response(
            request, 422, "a value is out of the range the store can hold; use a smaller one"
        )

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(request, 500, "internal error; the controller log has the details")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(AuthError, auth_error)
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(UnknownDeploymentError, not_found)
    app.add_exception_handler(ConflictError, conflict)
    app.add_exception_handler(IntegrityError, conflict)
    app.add_exception_handler(ForecastError, conflict)
    app.add_exception_handler(DataError, unstorable)
    app.add_exception_handler(InvalidOverride, unprocessable)
    app.add_exception_handler(InvalidSampleError, unprocessable)
    app.add_exception_handler(Exception, internal)
