"""Domain errors → HTTP, in one place (DESIGN.md §7).

Every error leaves the API as ``{"error": {"code": "<snake_case>", "message": "<one line>"}}`` (plus
``details`` for validation errors) with a status chosen here: routes raise domain exceptions
(``api.pki.errors.PkiError`` and friends) or :class:`ApiError`, never ``HTTPException`` with ad-hoc
bodies. Validation errors never echo the offending input back (it may be a megabyte of hostile text).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.pki.errors import PkiError
from sensor.errors import UserError

logger = logging.getLogger(__name__)

MAX_VALIDATION_DETAILS = 20


class ApiError(Exception):
    """An error a route raises on purpose: a stable code, a message, an HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.details = details  # ErrorDetail-shaped items (e.g. a policy file's ``file:line`` problems)


class BodyTooLarge(StarletteHTTPException):
    """Raised while a body is being received once it passes the cap; an HTTPException so FastAPI's body
    reader lets it through instead of turning it into a generic 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies are limited to {limit} bytes", {"Connection": "close"})


def not_found(what: str = "resource") -> ApiError:
    """404 that names the kind of thing, never whether a particular id exists elsewhere (A4)."""
    return ApiError(404, "not_found", f"no such {what}")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loc: list[str | int] = Field(description="where in the request the problem is")
    msg: str
    type: str


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="stable snake_case reason", examples=["not_found"])
    message: str = Field(description="one line for a person", examples=["no such alert"])
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"error": {"code": "not_found", "message": "no such alert"}}]},
    )

    error: ErrorInfo


def _error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, details: Any = None
) -> JSONResponse:
    info: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        info["details"] = details
    return JSONResponse({"error": info}, status_code=status, headers=headers)


def _code_for_status(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for err in list(errors)[:MAX_VALIDATION_DETAILS]:
        loc = [part if isinstance(part, int) else str(part)[:100] for part in err.get("loc", ())]
        out.append({"loc": loc, "msg": str(err.get("msg", ""))[:300], "type": str(err.get("type", ""))[:100]})
    return out


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this request's path."""
    from fastapi.routing import APIRoute

    from api.routes import all_routers

    path = request.url.path
    methods: set[str] = set()
    for router in all_routers():
        for route in router.routes:
            if isinstance(route, APIRoute) and route.path_regex.match(path):
                methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a request can end in to the one error body."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _error_response(exc.status, exc.code, exc.message, exc.headers, exc.details)

    async def on_pki_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PkiError)
        status = int(exc.status)
        if status >= 500:
            # The CA cannot be used (missing files, permissions): the operator's problem, not the caller's.
            logger.error("PKI unavailable: %s", exc)
            return _error_response(503, exc.code, "the certificate authority is unavailable")
        return _error_response(status, exc.code, exc.message)

    async def on_user_error(request: Request, exc: Exception) -> JSONResponse:
        # A problem the caller can fix (a bad file, a bad option of a domain package): 400 and its reason.
        code = getattr(exc, "code", None) or "refused"
        return _error_response(400, str(code), str(exc)[:1000])

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _error_response(
            422, "invalid_request", "the request does not match the schema", details=_details(exc.errors())
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        message = str(exc.detail) if exc.detail else _code_for_status(status)
        if status == 404 and allowed_methods(request):
            status = 405  # the path exists with other methods (routers included separately answer 404)
        if status == 405:
            # Resources whose methods live on separate routes: list them all (RFC 9110 §15.5.6).
            headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
            return _error_response(405, "method_not_allowed", "method not allowed on this resource", headers)
        if isinstance(exc, BodyTooLarge):
            return _error_response(413, "body_too_large", message, dict(exc.headers or {}))
        if status == 400 and "parsing the body" in message:
            # FastAPI's answer to a body json.loads could not take (nesting depth, a 10^6-digit integer).
            return _error_response(400, "body_unparseable", "the request body could not be parsed as JSON")
        return _error_response(status, _code_for_status(status), message, dict(exc.headers or {}) or None)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return _error_response(500, "internal_error", "internal error")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(PkiError, on_pki_error)
    app.add_exception_handler(UserError, on_user_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all with :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": HTTPStatus(status).phrase} for status in statuses}
