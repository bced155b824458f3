"""The project's tests run on the fixtures of the package's shipped test support (autional_sessions/testing.py),
which the contract suite uses too when it runs in process from an install."""

pytest_plugins = ("autional_sessions.testing",)
