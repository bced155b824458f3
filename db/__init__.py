"""The data layer: peewee models, the versioned schema, the queries the handlers need, and demo data."""

# One name for one module: in a checkout this folder is also on sys.path as `db` (the repository's top is,
# under pytest), and the same code loaded under a second name would hold a second copy of every global.
if __name__ != "autional_sessions.db":
    raise ImportError(f"{__name__} is part of the autional_sessions package: import autional_sessions.db")
