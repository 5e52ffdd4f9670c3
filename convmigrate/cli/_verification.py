"""Rendering a Verification: a per-layer error table, and JUnit XML for CI dashboards."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from convmigrate.cli._output import MAX_TABLE_ROWS, console, print_capped, table
from convmigrate.verify import Verification

LayersOption = Annotated[Path | None, typer.Option("--layers", help="Layers JSON (convmigrate layers -o): verify each conv with its real hyperparameters.")]
RtolOption = Annotated[float | None, typer.Option("--rtol", help="Relative tolerance (default by dtype: 1e-5 for float32).")]
AtolOption = Annotated[float | None, typer.Option("--atol", help="Absolute tolerance (default by dtype: 1e-6 for float32).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the random verification inputs.")]
JunitOption = Annotated[Path | None, typer.Option("--junit", help="Write one JUnit test case per layer (CI dashboards).")]


def render_verification(verification: Verification) -> None:
    """Failing layers always; passing ones up to MAX_TABLE_ROWS, then their worst error."""
    grid = table("layer", "kind", "converted weight", "max abs error", "max rel error", "result")
    failing = [c for c in verification.layers if not c.passed]
    passing = [c for c in verification.layers if c.passed]
    shown = failing + passing[: max(MAX_TABLE_ROWS - len(failing), 0)]
    for check in shown:
        result = "[green]ok[/]" if check.passed else f"[red]FAIL[/] {escape(check.detail)}"
        grid.add_row(escape(check.name), check.kind, escape(check.target), f"{check.max_abs:.3g}", f"{check.max_rel:.3g}", result)
    hidden = passing[len(shown) - len(failing):]
    worst = max((c.max_abs for c in hidden), default=0.0)
    print_capped(grid, len(hidden), f"conv layers ok (largest max abs error among them {worst:.3g})")
    identical = sum(c.passed for c in verification.tensors)
    console.print(f"other tensors: {identical}/{len(verification.tensors)} bit-identical", highlight=False)
    for check in verification.tensors:
        if not check.passed:
            console.print(f"[red]FAIL[/] {escape(check.target)}: {escape(check.detail)}", highlight=False)


def junit_xml(verification: Verification, suite: str) -> str:
    """One <testcase> per conv layer plus one for the exact comparison of the other tensors."""
    failures = len(verification.failures())
    root = ET.Element("testsuite", name=suite, tests=str(len(verification.layers) + 1), failures=str(failures))
    for check in verification.layers:
        case = ET.SubElement(root, "testcase", classname=suite, name=check.name)
        ET.SubElement(case, "system-out").text = f"max_abs={check.max_abs:.3g} max_rel={check.max_rel:.3g} weight={check.target}"
        if not check.passed:
            ET.SubElement(case, "failure", message=check.detail)
    case = ET.SubElement(root, "testcase", classname=suite, name="other tensors bit-identical")
    failed = [c for c in verification.tensors if not c.passed]
    if failed:
        ET.SubElement(case, "failure", message=f"{len(failed)} tensor(s) differ").text = "\n".join(
            f"{c.target}: {c.detail}" for c in failed
        )
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, verification: Verification, suite: str) -> None:
    path.write_text(junit_xml(verification, suite), encoding="utf-8")


def dump_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
