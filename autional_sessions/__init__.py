"""Autional session-management API: a contract-first server and its contract-test harness."""

import warnings

SERVICE_NAME = "autional-sessions"

# Connexion imports Starlette's test client when it is imported, and Starlette warns there about the
# client's httpx transport, in every process (each uvicorn worker too). The notice concerns a
# dependency's test helper, not anything this service or its users can change.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
