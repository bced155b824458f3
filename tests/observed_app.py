"""A small Connexion app with the service's route template and stack, for the tests of the middlewares
that observe requests (metrics, access log), and a way to call any ASGI app as uvicorn would."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from connexion.middleware import ConnexionMiddleware
from starlette.types import ASGIApp

from autional_sessions.http.app import middleware_stack
from autional_sessions.http.dispatch import OperationDispatcher

SESSIONS_TEMPLATE = "/sessions/user/{user_id}/sessions"
SECRET_USER = "usr_secret123"


async def list_sessions(user_id: str):
    return {"user_id": user_id, "items": []}, 200


async def fail():
    raise RuntimeError("the handler broke")


SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "observed", "version": "1"},
    "paths": {
        SESSIONS_TEMPLATE: {
            "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": f"{__name__}.list_sessions",
                "parameters": [{"name": "page", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/broken": {"get": {"operationId": f"{__name__}.fail", "responses": {"200": {"description": "ok"}}}},
    },
}


def observed_app(**stack: Any) -> ConnexionMiddleware:
    """The app with the service's stack, given `stack` (`middleware_stack`'s options: the recorders of the
    request context middleware, a metrics endpoint)."""
    app = ConnexionMiddleware(
        OperationDispatcher({}), middlewares=middleware_stack(validate_responses=False, **stack)
    )
    app.add_api(SPEC, strict_validation=False)
    return app


def call(app: ASGIApp, method: str, url: str, **options: Any) -> httpx.Response:
    """One request to `app`. Through httpx, whose scopes (like uvicorn's, unlike Starlette's TestClient's)
    carry no `extensions`."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, url, **options)

    return asyncio.run(send())
