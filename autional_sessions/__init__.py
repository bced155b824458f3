"""Autional session-management API: a contract-first server and its contract-test harness."""

SERVICE_NAME = "autional-sessions"
