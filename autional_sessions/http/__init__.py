"""The HTTP layer: the app's assembly over Connexion (`app`), its ASGI middlewares (parameter validation,
rate limits, the service's own routes), the dispatcher that calls the handlers, and the error handlers."""
