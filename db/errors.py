"""The one error the request path raises when the database cannot serve it (the app answers 503)."""

from __future__ import annotations


class DatabaseUnavailable(Exception):
    """The database is down, unreachable, too slow, or every pooled connection is busy.

    The message names the kind of failure only (never a URL, a host or a statement), as it is logged.
    """
