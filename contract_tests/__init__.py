"""The conformance suite: a plan of named checks (catalogue.py), each tied to the requirement it enforces
and ending PASSED, FAILED or SKIPPED with its reason, Schemathesis's schema checks among them.

In `make test` it runs in process, against the ASGI app on a seeded temporary database, every check with
the test settings' key. Against a deployment it runs with `autional-sessions contract-test --url URL
--token TOKEN --user-id USER_ID` (and optionally a second user and the signing key), which is pytest on
this package with the `--contract-*` options of its conftest.
"""
