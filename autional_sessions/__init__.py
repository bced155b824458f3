"""Autional session-management API: a contract-first server and its contract-test harness.

The contract, the handlers, the data layer and the contract suite sit at the top of the repository
(`openapi.yaml`, `handlers/`, `db/`, `contract_tests/`); the wheel ships them inside this package
(hatchling's `force-include`, pyproject.toml), as `autional_sessions.handlers` and so on. In a checkout,
where they lie beside this package rather than in it, the package also looks for its subpackages and
files at the repository's top (`CHECKOUT`), so each of them has the one name, `autional_sessions.db`,
whichever way the code runs: pytest, an editable install, `python -m autional_sessions`.
"""

from pathlib import Path

SERVICE_NAME = "autional-sessions"

_PACKAGE_DIR = Path(__file__).resolve().parent
# The repository this package is part of, when it runs from a checkout (the shipped folders are beside it,
# not in it); None when installed from a wheel.
CHECKOUT: Path | None = (
    _PACKAGE_DIR.parent
    if not (_PACKAGE_DIR / "db").is_dir()
    and (_PACKAGE_DIR.parent / "pyproject.toml").is_file()
    and (_PACKAGE_DIR.parent / "db" / "__init__.py").is_file()
    else None
)
if CHECKOUT is not None:
    __path__.append(str(CHECKOUT))
