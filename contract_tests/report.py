"""The suite's report: every check of the catalogue, PASSED, FAILED or SKIPPED, with its requirement and why.

pytest runs the checks (each check is one test, `schema` is several); this module turns what pytest saw
into one verdict per check id, for the terminal, a JSON report and a JUnit XML report of one test case per
check. A check that no test ran is SKIPPED with the reason (not selected, not run), never left out.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .catalogue import CHECKS, Check
from .expect import CheckFailed

PASSED, FAILED, SKIPPED = "PASSED", "FAILED", "SKIPPED"
_CURL = re.compile(r"^\s*(curl -X .*)$", re.MULTILINE)
# A failure's reason in the report: its first lines, not a whole traceback.
_REASON_CHARS = 2000


@dataclass
class Verdict:
    check: Check
    outcome: str = SKIPPED
    reason: str = "not run"
    reproduce: list[str] = field(default_factory=list)
    # What the tests of this check ended as (a check may have several: `schema`).
    results: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def record(self, outcome: str, reason: str, reproduce: list[str]) -> None:
        self.results.append((outcome, reason, reproduce))
        failed = [r for r in self.results if r[0] == FAILED]
        passed = [r for r in self.results if r[0] == PASSED]
        if failed:
            self.outcome = FAILED
            self.reason = "\n".join(r[1] for r in failed)[:_REASON_CHARS]
            self.reproduce = [line for r in failed for line in r[2]][:10]
        elif passed:
            self.outcome, self.reproduce = PASSED, []
            # A pass with a note (a part that could not run) keeps the note.
            notes = [r[1] for r in passed if r[1]]
            self.reason = "; ".join(notes)
        else:
            self.outcome, self.reproduce = SKIPPED, []
            self.reason = "; ".join(sorted({r[1] for r in self.results}))


class Report:
    def __init__(self, target: str, selected: set[str]) -> None:
        self.target = target
        self.verdicts = {
            check.id: Verdict(check, reason="not run" if check.id in selected else "not selected")
            for check in CHECKS
        }

    def record(self, check_id: str, report: pytest.TestReport, call: pytest.CallInfo[Any]) -> None:
        verdict = self.verdicts[check_id]
        if report.passed:
            if report.when == "call":
                verdict.record(PASSED, _notes(report), [])
            return
        if report.skipped:
            verdict.record(SKIPPED, _skip_reason(report), [])
            return
        exc = call.excinfo.value if call.excinfo else None
        if isinstance(exc, CheckFailed):
            verdict.record(FAILED, exc.reason, [e.curl() for e in exc.exchanges])
            return
        text = report.longreprtext
        prefix = "" if report.when == "call" else f"error in {report.when}: "
        verdict.record(FAILED, prefix + _first_lines(exc, text), _CURL.findall(text))

    @property
    def failed(self) -> bool:
        return any(v.outcome == FAILED for v in self.verdicts.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "checks": [
                {
                    "id": v.check.id,
                    "requirement": v.check.requirement,
                    "title": v.check.title,
                    "outcome": v.outcome,
                    "reason": v.reason,
                    "reproduce": v.reproduce,
                }
                for v in self.verdicts.values()
            ],
        }

    def write_json(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")

    def write_junit(self, path: str) -> None:
        """One test case per check, in the catalogue's order: what a CI dashboard shows."""
        verdicts = list(self.verdicts.values())
        suite = ET.Element(
            "testsuite",
            name="autional-sessions contract",
            tests=str(len(verdicts)),
            failures=str(sum(v.outcome == FAILED for v in verdicts)),
            skipped=str(sum(v.outcome == SKIPPED for v in verdicts)),
            errors="0",
        )
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="target", value=self.target)
        for v in verdicts:
            case = ET.SubElement(suite, "testcase", classname=f"contract.{v.check.group}", name=v.check.id)
            if v.outcome == FAILED:
                failure = ET.SubElement(
                    case, "failure", message=v.reason.splitlines()[0][:500] if v.reason else ""
                )
                failure.text = "\n".join([v.check.requirement, v.reason, *v.reproduce])
            elif v.outcome == SKIPPED:
                ET.SubElement(case, "skipped", message=v.reason)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)

    def lines(self) -> list[str]:
        """The terminal report: one line per check, then each failure's reason and curl lines."""
        width = max(len(c.id) for c in CHECKS)
        out = []
        for v in self.verdicts.values():
            line = f"{v.outcome:<8} {v.check.id:<{width}}  {v.check.requirement}"
            if v.outcome == SKIPPED or (v.outcome == PASSED and v.reason):
                line += f"  ({v.reason})"
            out.append(line)
        for v in self.verdicts.values():
            if v.outcome == FAILED:
                out += ["", f"FAILED {v.check.id}: {v.check.title}", f"  requirement: {v.check.requirement}"]
                out += ["  " + line for line in v.reason.splitlines()]
                out += ["  reproduce: " + curl for curl in v.reproduce]
        counts = {o: sum(v.outcome == o for v in self.verdicts.values()) for o in (PASSED, FAILED, SKIPPED)}
        out += ["", ", ".join(f"{n} {o.lower()}" for o, n in counts.items()) + f" ({self.target})"]
        return out


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


def _notes(report: pytest.TestReport) -> str:
    return "; ".join(str(value) for name, value in report.user_properties if name == "contract-note")


def _first_lines(exc: BaseException | None, text: str) -> str:
    if exc is not None:
        message = str(exc).strip() or type(exc).__name__
        return message[:_REASON_CHARS]
    return text.strip().splitlines()[-1][:_REASON_CHARS] if text.strip() else "failed"
