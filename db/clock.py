"""The time as the data layer stores it: naive UTC (a TIMESTAMP without time zone on every engine), to the
second, as the API writes its timestamps."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
