"""Metrics: requests counted and timed by route template, the helpers the other code calls, /metrics, and
the counts of several worker processes added up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Receive, Scope, Send

from autional_sessions.observability.metrics import (
    LATENCY_BUCKETS,
    Metrics,
    metrics_app,
    observe_pool_wait,
    record_database_error,
    record_rate_limit_refusal,
)
from autional_sessions.observability.metrics_dir import ENV_VAR, prepare_multiprocess_dir
from autional_sessions.observability.request_context import RequestContextMiddleware
from autional_sessions.observability.request_outcome import UNMATCHED, RouteTemplates
from tests.observed_app import SECRET_USER, SESSIONS_TEMPLATE, SPEC, call, observed_app

REQUESTS = "autional_sessions_http_requests_total"
LATENCY = "autional_sessions_http_request_duration_seconds"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # This process counts in memory; a directory inherited from the environment would not be read.
    monkeypatch.delenv(ENV_VAR, raising=False)


def app_with_metrics(metrics: Metrics):
    return observed_app(route_of=RouteTemplates(SPEC).of, recorders=[metrics.record])


def requests(registry: CollectorRegistry, route: str, method: str, status: int) -> float | None:
    return registry.get_sample_value(REQUESTS, {"route": route, "method": method, "status": str(status)})


def scrape(registry: CollectorRegistry | None = None) -> str:
    response = call(metrics_app(registry), "GET", "/metrics")
    assert response.status_code == 200
    return response.text


def test_a_request_is_counted_and_timed_by_its_route_template_never_its_path(metrics, registry):
    app = app_with_metrics(metrics)

    for _ in range(2):
        assert call(app, "GET", f"/sessions/user/{SECRET_USER}/sessions?page=2").status_code == 200

    assert requests(registry, SESSIONS_TEMPLATE, "GET", 200) == 2
    labels = {"route": SESSIONS_TEMPLATE, "method": "GET"}
    assert registry.get_sample_value(f"{LATENCY}_count", labels) == 2
    assert registry.get_sample_value(f"{LATENCY}_bucket", {**labels, "le": "10.0"}) == 2
    exposition = scrape(registry)
    assert SECRET_USER not in exposition
    assert "page" not in exposition


def test_requests_that_match_no_operation_are_counted_as_unmatched(metrics, registry):
    app = app_with_metrics(metrics)

    assert call(app, "GET", f"/users/{SECRET_USER}").status_code == 404
    assert call(app, "DELETE", f"/sessions/user/{SECRET_USER}/sessions").status_code == 405

    assert requests(registry, UNMATCHED, "GET", 404) == 1
    assert requests(registry, UNMATCHED, "DELETE", 405) == 1
    assert SECRET_USER not in scrape(registry)


def test_a_handler_error_counts_with_the_status_of_its_rendered_response(metrics, registry):
    assert call(app_with_metrics(metrics), "GET", "/broken").status_code == 500

    assert requests(registry, "/broken", "GET", 500) == 1


def test_an_exception_that_escapes_the_app_counts_as_500(metrics, registry):
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("no response at all")

    app = RequestContextMiddleware(broken, route_of=lambda scope: "/broken", recorders=[metrics.record])

    assert call(app, "GET", "/broken").status_code == 500
    assert requests(registry, "/broken", "GET", 500) == 1


def test_the_latency_is_the_time_until_the_response_is_over(metrics, registry):
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})

    app = RequestContextMiddleware(slow, route_of=lambda scope: "/slow", recorders=[metrics.record])
    call(app, "GET", "/slow")

    labels = {"route": "/slow", "method": "GET"}
    assert registry.get_sample_value(f"{LATENCY}_sum", labels) >= 0.05
    assert registry.get_sample_value(f"{LATENCY}_bucket", {**labels, "le": "0.025"}) == 0
    assert registry.get_sample_value(f"{LATENCY}_bucket", {**labels, "le": "0.1"}) == 1


def test_latency_buckets_run_from_a_millisecond_to_ten_seconds():
    assert LATENCY_BUCKETS[0] == 0.001
    assert LATENCY_BUCKETS[-1] == 10.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_a_method_no_http_standard_knows_shares_one_label_value(metrics, registry):
    metrics.observe_request("/x", "BREW", 400, 0.01)
    metrics.observe_request("/x", "FLY", 400, 0.01)

    assert requests(registry, "/x", "other", 400) == 2


def test_database_errors_pool_waits_and_rate_limit_refusals_are_recorded(metrics, registry):
    metrics.record_database_error("unavailable")
    metrics.record_database_error("unavailable")
    metrics.record_database_error("error")
    metrics.observe_pool_wait(0.2)
    metrics.record_rate_limit_refusal("sub")

    value = registry.get_sample_value
    assert value("autional_sessions_database_errors_total", {"kind": "unavailable"}) == 2
    assert value("autional_sessions_database_errors_total", {"kind": "error"}) == 1
    assert value("autional_sessions_database_pool_wait_seconds_count") == 1
    assert value("autional_sessions_database_pool_wait_seconds_sum") == pytest.approx(0.2)
    assert value("autional_sessions_rate_limit_refusals_total", {"kind": "sub"}) == 1
    # A known kind is there before it first happens, so that a query on it finds a series.
    assert value("autional_sessions_rate_limit_refusals_total", {"kind": "ip"}) == 0


def test_the_module_functions_record_in_the_process_metrics_that_metrics_app_serves():
    def value(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    errors = value("autional_sessions_database_errors_total", {"kind": "unavailable"})
    refusals = value("autional_sessions_rate_limit_refusals_total", {"kind": "ip"})
    waits = value("autional_sessions_database_pool_wait_seconds_count")

    record_database_error("unavailable")
    record_rate_limit_refusal("ip")
    observe_pool_wait(0.01)

    assert value("autional_sessions_database_errors_total", {"kind": "unavailable"}) == errors + 1
    assert value("autional_sessions_rate_limit_refusals_total", {"kind": "ip"}) == refusals + 1
    assert value("autional_sessions_database_pool_wait_seconds_count") == waits + 1
    assert "autional_sessions_database_errors_total" in scrape()


def test_the_endpoint_middleware_serves_get_metrics_and_passes_everything_else_on(metrics, registry):
    metrics.record_database_error("error")
    app = observed_app(metrics_endpoint=metrics_app(registry))

    served = call(app, "GET", "/metrics")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/plain")
    assert 'autional_sessions_database_errors_total{kind="error"} 1.0' in served.text
    assert call(app, "POST", "/metrics").status_code == 404
    assert call(app, "GET", f"/sessions/user/{SECRET_USER}/sessions").status_code == 200


# Multiprocess mode is chosen when prometheus_client is imported, so every process of this test is a new
# interpreter: one prepares the directory as `serve` does, two record as workers do, one answers /metrics.
PREPARE = "import sys; from autional_sessions.observability.metrics_dir import prepare_multiprocess_dir as p; print(p(sys.argv[1]))"
WORKER = f"""
from autional_sessions.observability.metrics import default_metrics, record_rate_limit_refusal
default_metrics().observe_request({SESSIONS_TEMPLATE!r}, "GET", 200, 0.02)
record_rate_limit_refusal("ip")
"""
SCRAPER = """
from autional_sessions.observability.metrics import metrics_app
from tests.observed_app import call
print(call(metrics_app(), "GET", "/metrics").text)
"""


def run_python(code: str, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def samples(exposition: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


@pytest.mark.slow
def test_metrics_app_adds_up_the_counts_of_all_worker_processes(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"an earlier run's values")
    (directory / "notes.txt").write_text("not prometheus-client's: stays")
    env = {name: value for name, value in os.environ.items() if name != ENV_VAR}

    assert run_python(PREPARE, str(directory), env=env).strip() == str(directory)
    env[ENV_VAR] = str(directory)
    for _worker in range(2):
        run_python(WORKER, env=env)
    found = samples(run_python(SCRAPER, env=env))

    route = frozenset({"route": SESSIONS_TEMPLATE, "method": "GET", "status": "200"}.items())
    assert found[(REQUESTS, route)] == 2
    latency = frozenset({"route": SESSIONS_TEMPLATE, "method": "GET"}.items())
    assert found[(f"{LATENCY}_count", latency)] == 2
    assert found[("autional_sessions_rate_limit_refusals_total", frozenset({"kind": "ip"}.items()))] == 2
    assert (directory / "notes.txt").exists()
    assert not (directory / "counter_999999.db").exists()


@pytest.mark.slow
def test_without_a_path_a_temporary_directory_is_used_and_removed_at_exit():
    env = {name: value for name, value in os.environ.items() if name != ENV_VAR}
    code = """
    import os
    from autional_sessions.observability.metrics_dir import ENV_VAR, prepare_multiprocess_dir
    path = prepare_multiprocess_dir(None)
    assert os.environ[ENV_VAR] == path and os.path.isdir(path) and not os.listdir(path)
    print(path)
    """

    path = run_python(code, env=env).strip()

    assert path
    assert not os.path.exists(path)


def test_preparing_after_prometheus_client_counted_in_memory_is_refused(tmp_path):
    # This test process imported prometheus_client without the variable set (see single_process).
    with pytest.raises(RuntimeError, match="prepare_multiprocess_dir"):
        prepare_multiprocess_dir(str(tmp_path))

    assert ENV_VAR not in os.environ
