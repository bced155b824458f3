"""The conformance suite proven check by check: faulty deployments it must fail on, and the correct one it
must pass on (README, "Tests"). What they prove is the suite's, whatever engine serves the API, so they are
not marked `engine`: they run once, in the SQLite pass of `make test`."""

USER = "usr_0000001"  # user A, whose token the suite is given
OTHER_USER = "usr_0000002"  # user B
