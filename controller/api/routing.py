"""A route class whose JSON bodies refuse NaN, Infinity and numbers too large for a float (422, not a crash later)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError(f"number {text[:40]} is out of range for a float", text, 0)
    return value


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON; send a finite number", name, 0)


def _check_strings(value: Any) -> None:
    """Refuse text no database can store: NUL characters and lone UTF-16 surrogates (``"\\ud800"``)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise json.JSONDecodeError("strings must not contain NUL (\\u0000) characters", "", 0)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise json.JSONDecodeError("strings must not contain lone surrogates", "", 0) from error
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


class StrictJSONRequest(Request):
    """A request whose ``json()`` accepts only standard JSON with finite numbers."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body, parse_float=_finite_float, parse_constant=_reject_constant)
            except json.JSONDecodeError:
                raise
            except (
                ValueError
            ) as error:  # not UTF-8, or an integer too long to parse: still invalid JSON (422)
                raise json.JSONDecodeError(str(error)[:200], "", 0) from error
            _check_strings(self._json)
        return self._json


class StrictJSONRoute(APIRoute):
    """Parses bodies with :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            return await original(StrictJSONRequest(request.scope, request.receive))

        return handler
