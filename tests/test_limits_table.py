"""The README's limits tables are the ones convmigrate/limits.py generates."""

from __future__ import annotations

import re
from pathlib import Path

from convmigrate.limits import DEVIATIONS, LIMITS, readme_section

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_shows_the_generated_tables() -> None:
    text = README.read_text(encoding="utf-8")
    shown = re.search(r"<!-- limits:begin -->\n(.*?)<!-- limits:end -->", text, re.DOTALL)
    assert shown is not None, "README.md has no limits section"
    assert shown.group(1) == readme_section(), "README.md's limits tables are stale: paste `python -m convmigrate.limits`"


def test_every_limit_is_a_module_constant() -> None:
    import convmigrate.limits as limits

    assert len({limit.name for limit in LIMITS}) == len(LIMITS)
    for limit in LIMITS:
        assert getattr(limits, limit.name) == limit.value, limit.name
    assert len({(d.format, d.case) for d in DEVIATIONS}) == len(DEVIATIONS)
