"""The contract suite: Schemathesis drives every operation of openapi.yaml and checks every response.

In `make test` it runs in process, against the ASGI app on a seeded temporary database. Against a
deployment it runs with `autional-sessions contract-test --url URL --token TOKEN --user-id USER_ID`, which
is pytest on this package with the `--contract-*` options of its conftest.
"""
