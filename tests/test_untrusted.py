"""The bounded JSON/TOML loader: equal to the standard parsers on what they should read, and
one-line refusals past its limits (the hostile files themselves are in tests/corpus)."""

from __future__ import annotations

import json
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convmigrate.limits import JSON_MAX_DEPTH
from convmigrate.untrusted import UntrustedTextError, load_json, load_toml

TEXT = st.text(st.characters(blacklist_categories=("Cs",)))  # lone surrogates are refused, see below
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False, allow_infinity=False), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_reads_what_json_reads(value: object) -> None:
    """Strings full of brackets, quotes and escapes do not count as nesting or numbers."""
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert load_json(text.encode(), max_bytes=1 << 20) == json.loads(text)


def test_depth_limit_is_exact() -> None:
    assert load_json("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH, max_bytes=1000) is not None
    with pytest.raises(UntrustedTextError, match=f"nested {JSON_MAX_DEPTH + 1} levels deep"):
        load_json("[" * (JSON_MAX_DEPTH + 1) + "]" * (JSON_MAX_DEPTH + 1), max_bytes=1000)
    brackets_in_strings = json.dumps({"a": "[" * 1000 + '\\"{' * 1000})
    assert load_json(brackets_in_strings, max_bytes=10_000) == json.loads(brackets_in_strings)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": 1, "a": 2}', "the key 'a' appears twice"),
        ("[NaN]", "NaN is not a JSON number"),
        ("[-Infinity]", "-Infinity is not a JSON number"),
        ('["\\udc00"]', "lone UTF-16 surrogate"),
        ("[1] x", "not valid JSON"),
        ("x" * 101, "101 bytes exceed the 100-byte limit"),
    ],
)
def test_refusals_are_one_line(text: str, problem: str) -> None:
    with pytest.raises(UntrustedTextError, match=problem) as caught:
        load_json(text, max_bytes=100)
    assert "\n" not in str(caught.value)


def test_a_surrogate_pair_is_text() -> None:
    assert load_json('["\\ud83d\\ude00"]', max_bytes=100) == ["\N{GRINNING FACE}"]


def test_toml_as_tomllib_reads_it() -> None:
    text = b'# a [ comment\n[[param]]\nkind = "conv"\ntorch = "a[0]\\"{"\nx = [[1, 2], {a = 1}]\ns = """\n[[[\n"""\n'
    assert load_toml(text, max_bytes=1000) == tomllib.loads(text.decode())
    with pytest.raises(UntrustedTextError, match="nested 128 levels deep"):
        load_toml(b"x = " + b"[" * 128 + b"]" * 128, max_bytes=1000)
    with pytest.raises(UntrustedTextError, match="a number of 41 digits"):
        load_toml(b"x = " + b"1" * 41, max_bytes=1000)


def test_long_integers_become_floats_in_linear_time() -> None:
    """As serde_json reads them; int() of 10**6 digits would take minutes (and Python refuses it)."""
    assert load_json("[" + "1" * 40 + ", -" + "1" * 41 + "]", max_bytes=100) == [int("1" * 40), -float("1" * 41)]
    with pytest.raises(UntrustedTextError, match=r"the number 99999999999999999999\.\.\. is beyond the float range"):
        load_json("[" + "9" * 1_000_000 + "]", max_bytes=2_000_000)
    with pytest.raises(UntrustedTextError, match="the number 1e400 is beyond the float range"):
        load_json("[1e400]", max_bytes=100)
