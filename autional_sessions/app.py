"""The application: Connexion routes and validates every request against openapi.yaml.

`create_app` does at start-up everything that can be done once (reading the spec and the settings,
building the problem catalogue, the token verifier and the database pool), so the request path only
runs the middleware, the handler and its queries.
"""

from __future__ import annotations

import copy
import logging

import connexion
import peewee
from connexion import AsyncApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from starlette.exceptions import HTTPException

from autional_sessions.auth import TokenVerifier, bearer_security_handler
from autional_sessions.config import Settings
from autional_sessions.problems import ProblemCatalogue, ProblemError
from autional_sessions.request_context import RequestContextMiddleware, current_request
from autional_sessions.spec import load_spec
from autional_sessions.validation import CollectingParameterValidator
from db.engine import is_unavailable, open_database
from db.models import database_proxy

logger = logging.getLogger("autional_sessions")

# Connexion and Starlette raise their own exceptions for what the spec rejects before our code runs;
# each HTTP status they use maps to one problem type of our catalogue.
_STATUS_TO_TYPE = {
    400: "invalid-request",
    401: "invalid-token",
    404: "route-not-found",
    405: "method-not-allowed",
}


def create_app(settings: Settings | None = None, *, database: peewee.Database | None = None) -> AsyncApp:
    """Build the app. `database` lets a caller (a test, an embedding) share a pool it already opened."""
    settings = settings or Settings.from_env()
    spec = copy.deepcopy(load_spec())
    catalogue = ProblemCatalogue.from_spec(spec, settings.problem_base_uri, settings.service_name)
    verifier = TokenVerifier(settings)
    if database is None:
        open_database(settings)
    else:
        database_proxy.initialize(database)

    app = AsyncApp(__name__)
    app.add_api(
        spec,
        strict_validation=True,
        validate_responses=settings.validate_responses,
        security_map={"bearer": bearer_security_handler(verifier)},
        validator_map={"parameter": CollectingParameterValidator},
        swagger_ui_options=SwaggerUIOptions(
            swagger_ui=True, swagger_ui_path="/ui", spec_path="/openapi.json"
        ),
    )
    app.add_middleware(RequestContextMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION)
    _add_error_handlers(app, catalogue, settings)
    return app


def create_app_from_env() -> AsyncApp:
    """Factory for uvicorn (`--factory`), so that each worker process builds its own app and pool."""
    return create_app(Settings.from_env())


def _add_error_handlers(app: AsyncApp, catalogue: ProblemCatalogue, settings: Settings) -> None:
    # async: Connexion would run a plain function in a worker thread, a hop an error does not need.
    async def problem_error(_request: ConnexionRequest, exc: ProblemError) -> ConnexionResponse:
        return catalogue.render(exc)

    async def framework_error(request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
        status = exc.status_code
        if status >= 500:
            return await internal_error(request, exc)
        # Any other client error the framework raises breaks the contract of the request.
        type_name = _STATUS_TO_TYPE.get(status, "invalid-request")
        detail = getattr(exc, "detail", None) or catalogue[type_name].title
        if status == 401 and "No authorization token" in detail:
            type_name = "missing-credentials"
        elif status == 404:
            detail = f"No operation of this API has the path {request.url.path}"
        elif status == 405:
            detail = f"This path does not take {request.method}; see the Allow header"
        headers = dict(exc.headers or {})
        if status == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer realm="autional-sessions"')
        return catalogue.render(ProblemError(type_name, detail, headers=headers))

    async def internal_error(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        ctx = current_request()
        if is_unavailable(exc):
            logger.warning("database unavailable (request_id=%s): %s", ctx.request_id, exc.__class__.__name__)
            return catalogue.render(
                ProblemError(
                    "service-unavailable",
                    "The session store is unavailable; retry later",
                    retry_after=settings.retry_after_seconds,
                )
            )
        logger.error("unexpected error (request_id=%s)", ctx.request_id, exc_info=exc)
        return catalogue.render(
            ProblemError("internal-error", f"An unexpected error occurred; quote request_id {ctx.request_id}")
        )

    app.add_error_handler(ProblemError, problem_error)
    app.add_error_handler(ProblemException, framework_error)
    app.add_error_handler(HTTPException, framework_error)
    app.add_error_handler(Exception, internal_error)


__all__ = ["connexion", "create_app", "create_app_from_env"]
