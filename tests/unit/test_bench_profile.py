"""bench/profile.py's share of each production feature in the samples of a running server."""

from __future__ import annotations

from tests.bench_scripts import bench_script
from tests.checkout import REPO

profile = bench_script("profile")

LOOP = "Runner.run (asyncio/runners.py:118);RequestContextMiddleware.__call__ (autional_sessions/observability/request_context.py:157)"
CLIENT_LAYER = "ClientRateLimitMiddleware.__call__ (autional_sessions/http/rate_limits.py:162)"


def stacks(*lines: tuple[str, int]) -> str:
    return "\n".join(f"{stack} {count}" for stack, count in lines)


def test_a_feature_s_share_is_its_own_work_and_the_libraries_it_calls_not_the_layers_it_hands_on_to():
    collapsed = stacks(
        # the rate limits' layer handing the request on to Connexion's routing: not theirs
        (f"{LOOP};{CLIENT_LAYER};RoutingMiddleware.__call__ (connexion/middleware/routing.py:158)", 50),
        # ... and from there to the handler and the store, deeper down: not theirs either
        (f"{LOOP};{CLIENT_LAYER};Router.app (starlette/routing.py:704);fetch (db/sqlite_store.py:88)", 20),
        # counting in memory, and a library's arithmetic under it: theirs
        (f"{LOOP};{CLIENT_LAYER};_MemoryCounter.count (autional_sessions/security/rate_limiter.py:218)", 4),
        (f"{LOOP};{CLIENT_LAYER};RateLimitItem.get_expiry (limits/limits.py:90)", 1),
        # the client's address, asked for by the rate limits: theirs
        (f"{LOOP};{CLIENT_LAYER};ClientAddress.of (autional_sessions/http/client_address.py:45)", 2),
        # their send wrapper handing a message on to the observer's: not theirs
        (
            f"{LOOP};send_with_budget (autional_sessions/http/rate_limits.py:159);"
            "send_marked (autional_sessions/observability/request_context.py:190)",
            3,
        ),
        # the observer calling the metrics, and prometheus-client counting: the metrics'
        (
            f"{LOOP};Metrics.record (autional_sessions/observability/metrics.py:88);inc (prometheus_client/values.py:20)",
            6,
        ),
        # the access log's record on the loop, and its writing thread: the access log's
        (f"{LOOP};AccessLog.record (autional_sessions/observability/access_log.py:70)", 5),
        (
            "_bootstrap (threading.py:1002);Thread.run (threading.py:982);"
            "_monitor (autional_sessions/observability/log_format.py:300);dumps (orjson:1)",
            7,
        ),
        # Redis's answer read in a callback of the event loop, outside any frame of ours: the rate limits'
        ("Runner.run (asyncio/runners.py:118);BaseConnection.data_received (coredis/connection.py:341)", 4),
        # the subject's layer, deeper than the address's and Connexion's, counting: the innermost feature
        # frame decides, not the outermost
        (
            f"{LOOP};{CLIENT_LAYER};RoutingMiddleware.__call__ (connexion/middleware/routing.py:158);"
            "SubjectRateLimitMiddleware.__call__ (autional_sessions/http/rate_limits.py:201);"
            "_MemoryCounter.count (autional_sessions/security/rate_limiter.py:218)",
            5,
        ),
        # a refusal's problem, made by the rate limits: theirs
        (f"{LOOP};{CLIENT_LAYER};ProblemError.__init__ (autional_sessions/problems/factory.py:40)", 1),
        # another thread (an idle pool's): nobody's
        ("_bootstrap (threading.py:1002);worker (concurrent/futures/thread.py:80)", 2),
    )

    total, found = profile.feature_shares(collapsed)

    assert total == 110
    assert found == {"rate limits": 17, "access log": 12, "metrics": 6}


def test_absolute_paths_are_read_below_site_packages_or_the_project_root():
    root = REPO
    lines = stacks(
        # the only feature frame under the project's root: the rate limits' own work
        (
            f"a (/usr/lib/python3.11/asyncio/runners.py:1);b ({root}/autional_sessions/http/rate_limits.py:10)",
            3,
        ),
        # a library of theirs below site-packages, after a frame of theirs: theirs
        (
            f"a ({root}/autional_sessions/http/rate_limits.py:10);b (/venv/lib/python3.11/site-packages/limits/x.py:1)",
            2,
        ),
        # a layer below site-packages after it: not theirs
        (
            f"a ({root}/autional_sessions/http/rate_limits.py:10);b (/venv/lib/python3.11/site-packages/starlette/x.py:1)",
            5,
        ),
        # a layer of the project under the root after it: not theirs
        (
            f"a ({root}/autional_sessions/http/rate_limits.py:10);b ({root}/autional_sessions/http/dispatch.py:1)",
            7,
        ),
    )

    total, found = profile.feature_shares(lines, root)

    assert (total, found["rate limits"]) == (17, 5)
