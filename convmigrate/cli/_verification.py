"""Rendering a Verification: a per-layer error table (JUnit XML is in convmigrate/reports.py)."""

from __future__ import annotations

from convmigrate.cli._output import MAX_TABLE_ROWS, console, line, print_capped, table, text
from convmigrate.verify import Verification
from convmigrate.verify.results import RANDOM_WEIGHTS


def render_verification(verification: Verification) -> None:
    """Failing layers always; passing ones up to MAX_TABLE_ROWS, then their worst error."""
    grid = table("layer", "kind", "converted weight", "max abs error", "max rel error", "result")
    failing = [c for c in verification.layers if not c.passed]
    passing = [c for c in verification.layers if c.passed]
    shown = failing + passing[: max(MAX_TABLE_ROWS - len(failing), 0)]
    for check in shown:
        result = text("ok", "green") if check.passed else line(("FAIL ", "red"), check.detail)
        grid.add_row(text(check.name), text(check.kind), text(check.target), f"{check.max_abs:.3g}",
                     f"{check.max_rel:.3g}", result)
    hidden = passing[len(shown) - len(failing):]
    worst = max((c.max_abs for c in hidden), default=0.0)
    print_capped(grid, len(hidden), f"conv layers ok (largest max abs error among them {worst:.3g})")
    moved = sum(c.passed and c.numerics == RANDOM_WEIGHTS for c in verification.layers)
    if moved:
        console.print(f"numerics: {moved} conv weight(s) bit-identical to the original's, each layer configuration "
                      "run once on random weights and inputs")
    identical = sum(c.passed for c in verification.tensors)
    console.print(f"other tensors: {identical}/{len(verification.tensors)} bit-identical")
    for check in verification.tensors:
        if not check.passed:
            kind = f", {check.kind}" if check.kind else ""
            console.print(line(("FAIL ", "red"), f"{check.target or check.source} (layer {check.layer or '(root)'}{kind}): "
                               f"{check.detail}"))
    if verification.dropped:
        shown_drops = MAX_TABLE_ROWS // 8
        more = len(verification.dropped) - shown_drops
        console.print(line("dropped on purpose: ", ", ".join(d.source for d in verification.dropped[:shown_drops])
                           + (f" and {more} more" if more > 0 else ""), " (--report lists each with its reason)"))
