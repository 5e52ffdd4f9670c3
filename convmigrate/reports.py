"""Machine-readable results: the JSON report every command prints (`--json`) or writes
(`--report`), and JUnit XML of a verification (`--junit`) for CI dashboards.

Every result object has `to_json()`; this module only serialises. JSON escapes every control
character itself; XML 1.0 cannot hold most of them at all, so names and details go into JUnit
through `text.printable`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Protocol

from convmigrate.formats.atomic import write_small_file
from convmigrate.text import printable
from convmigrate.verify.results import Verification


class Result(Protocol):
    """What every command returns: a report, whether it passed, and the error it fails with."""

    @property
    def ok(self) -> bool: ...

    def failures(self) -> list[str]: ...

    def error(self) -> Exception | None: ...

    def to_json(self) -> dict: ...


def report_text(document: dict) -> str:
    """One JSON object, indented, ASCII only (a lone surrogate in a name stays \\ud800)."""
    return json.dumps(document, indent=2, default=str) + "\n"


def write_report(path: Path, document: dict) -> None:
    write_small_file(path, report_text(document))


def junit_xml(verification: Verification | None, suite: str, failures: list[str] = ()) -> str:
    """One <testcase> per conv layer plus one for the exact comparison of the other tensors.

    Without a verification (the plan failed, a dry run, --no-verify) one "plan" test case says
    whether the run failed, and which names failed it.
    """
    if verification is None:
        root = ET.Element("testsuite", name=suite, tests="1", failures=str(int(bool(failures))))
        case = ET.SubElement(root, "testcase", classname=suite, name="plan")
        if failures:
            ET.SubElement(case, "failure", message=f"{len(failures)} problem(s) fail this run").text = "\n".join(
                printable(name) for name in failures)
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
    root = ET.Element("testsuite", name=suite, tests=str(len(verification.layers) + 1),
                      failures=str(len(verification.failures())))
    for check in verification.layers:
        case = ET.SubElement(root, "testcase", classname=suite, name=printable(check.name))
        ET.SubElement(case, "system-out").text = (
            f"max_abs={check.max_abs:.3g} max_rel={check.max_rel:.3g} weight={printable(check.target)}")
        if not check.passed:
            ET.SubElement(case, "failure", message=printable(check.detail))
    case = ET.SubElement(root, "testcase", classname=suite, name="other tensors bit-identical")
    failed = [c for c in verification.tensors if not c.passed]
    if failed:
        ET.SubElement(case, "failure", message=f"{len(failed)} tensor(s) differ").text = "\n".join(
            f"{printable(c.label)}: {printable(c.detail)}" for c in failed
        )
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, verification: Verification | None, suite: str, failures: list[str] = ()) -> None:
    write_small_file(path, junit_xml(verification, suite, failures))
