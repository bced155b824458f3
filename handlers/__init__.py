"""Operation handlers: one function per `operationId` in openapi.yaml."""

# One name for one module: in a checkout this folder is also on sys.path as `handlers` (the repository's top is,
# under pytest), and the same code loaded under a second name would hold a second copy of every global.
if __name__ != "autional_sessions.handlers":
    raise ImportError(
        f"{__name__} is part of the autional_sessions package: import autional_sessions.handlers"
    )
