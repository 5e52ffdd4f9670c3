"""One bounded loader for every JSON (and TOML) text that a file or a user hands us.

Python's `json.loads` and `tomllib.loads` recurse once per nesting level (100 000 levels: a
RecursionError), turn a 4 000-digit number into an int in quadratic time (and refuse 4 300
digits with a ValueError), accept NaN, and keep the last of two equal keys. Every JSON or TOML
a checkpoint holds (a safetensors header, a metadata value, a sharded index) or a user passes
(`--layers`, `--rules`) goes through here instead, so those failures are one-line
`UntrustedTextError`s that the caller wraps in its own error type, naming its file:

- the text's size is bounded by the caller's limit, checked before anything is parsed;
- nesting depth is measured first, in C-speed passes (strings removed by one regex, brackets
  counted by NumPy), so the parser never recurses deeper than `limits.JSON_MAX_DEPTH`, and
  the parser itself is the C one, without per-number Python hooks;
- the same pre-scan finds integer literals of more than `limits.JSON_MAX_NUMBER_DIGITS` digits,
  which int() would convert in quadratic time: in JSON they become floats (as serde_json, the
  safetensors library's parser, makes them), in TOML (64-bit integers by its spec) an error;
- the number of items (commas outside strings) is bounded by `limits.JSON_MAX_ITEMS`, which
  bounds the parser's memory before it allocates anything;
- duplicate keys are refused (parsers disagree on which one wins: an ambiguity, not data);
- NaN/Infinity and lone UTF-16 surrogates (`"\\ud800"`) are refused: neither is JSON
  (RFC 8259), and the safetensors library refuses both.

Example:
    >>> load_json(b'{"a": [1, 2]}', max_bytes=100)
    {'a': [1, 2]}
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tomllib
from pathlib import Path

import numpy as np

from convmigrate.limits import JSON_MAX_DEPTH, JSON_MAX_ITEMS, JSON_MAX_NUMBER_DIGITS, USER_FILE_MAX_BYTES


class UntrustedTextError(ValueError):
    """A JSON or TOML text is malformed or exceeds a limit; the message is one line."""


# A JSON string, or an unterminated one running to the end: the match never fails once it has
# its opening quote, so re.sub never restarts inside a string (no quadratic backtracking).
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
# TOML's strings (multi-line first) and comments, each running at most to its line's end
# (or, multi-line, to the text's end) when unterminated.
_TOML_STRING_OR_COMMENT = re.compile(
    rb'"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
    rb'|"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+(?:"|\\?(?=\n)|\\?\Z)|\'[^\'\n]*+(?:\'|(?=\n)|\Z)|#[^\n]*+'
)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SCAN_PIECE = 1 << 20
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (JSON_MAX_NUMBER_DIGITS + 1))
_DIGITS = re.compile(rb"[0-9]+")


def nesting_depth(structure: bytes) -> int:
    """The deepest nesting of [] and {} in text whose strings were removed, in linear time."""
    brackets = structure.translate(None, _NOT_BRACKETS)
    steps = np.frombuffer(brackets, dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, len(steps), _SCAN_PIECE):
        piece = steps[start : start + _SCAN_PIECE]
        running = np.cumsum(np.where((piece == ord("[")) | (piece == ord("{")), 1, -1), dtype=np.int64) + depth
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
    return deepest


def _check_structure(text: bytes, max_bytes: int, strings: re.Pattern[bytes]) -> int | None:
    """Size and nesting depth, before the parser sees the text; the length of the first run of
    more than JSON_MAX_NUMBER_DIGITS digits outside strings (None when there is none)."""
    if len(text) > max_bytes:
        raise UntrustedTextError(f"{len(text):,} bytes exceed the {max_bytes:,}-byte limit")
    structure = strings.sub(b'""', text)  # what is left: numbers, brackets, literals, separators
    depth = nesting_depth(structure)
    if depth > JSON_MAX_DEPTH:
        raise UntrustedTextError(f"nested {depth} levels deep, more than the limit of {JSON_MAX_DEPTH} (JSON_MAX_DEPTH)")
    items = structure.count(b",")
    if items > JSON_MAX_ITEMS:
        raise UntrustedTextError(f"{items:,} items, more than the limit of {JSON_MAX_ITEMS:,} (JSON_MAX_ITEMS)")
    digits = _LONG_DIGITS.search(structure)
    return None if digits is None else len(_DIGITS.match(structure, digits.start()).group())  # type: ignore[union-attr]


def _int_or_float(literal: str) -> int | float:
    """An integer literal; one of more than JSON_MAX_NUMBER_DIGITS digits becomes a float.

    int() of a long literal costs quadratic time (and Python refuses 4 300 digits); float() is
    linear, and it is what serde_json (the safetensors library's parser) makes of an integer
    beyond 64 bits. Where an integer is needed (a shape, an offset) the float is then refused.
    """
    return int(literal) if len(literal.lstrip("-")) <= JSON_MAX_NUMBER_DIGITS else _finite_float(literal)


def _finite_float(literal: str) -> float:
    """A float literal; one beyond the float range is refused, as serde_json refuses it."""
    value = float(literal)
    if math.isinf(value):
        raise UntrustedTextError(f"the number {literal[:20]}{'...' if len(literal) > 20 else ''} is beyond the float range")
    return value


def _no_constant(name: str) -> object:
    raise UntrustedTextError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)  # C speed; only a shorter dict needs the key that came twice
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise UntrustedTextError(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return result


def read_bounded(path: Path, max_bytes: int = USER_FILE_MAX_BYTES) -> bytes:
    """At most max_bytes + 1 bytes of the file at `path` (one more shows that it is too long).

    Raises OSError as `open` does; a FIFO or device is refused rather than read forever.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UntrustedTextError("is not a regular file")
        return stream.read(max_bytes + 1)


def load_json(text: bytes | str, *, max_bytes: int) -> object:
    """Parse JSON within the limits above; any problem is one UntrustedTextError line."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    long_number = _check_structure(raw, max_bytes, _JSON_STRING)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedTextError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(
            decoded, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
            parse_int=_int_or_float if long_number else None,  # the C fast path for every usual text
            parse_float=_finite_float,
        )
    except UntrustedTextError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; RecursionError cannot happen past the depth check
        raise UntrustedTextError(f"not valid JSON ({exc})") from None
    if _SURROGATE_ESCAPE.search(raw):  # only \ud800-\udfff escapes can make a lone surrogate
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise UntrustedTextError("a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not Unicode") from None
    return value


def load_toml(text: bytes, *, max_bytes: int) -> dict:
    """Parse TOML (tomllib) within the same size, depth and number limits."""
    long_number = _check_structure(text, max_bytes, _TOML_STRING_OR_COMMENT)
    if long_number is not None:  # TOML integers are 64-bit; a longer literal must be an error
        raise UntrustedTextError(f"a number of {long_number} digits (limit {JSON_MAX_NUMBER_DIGITS}, JSON_MAX_NUMBER_DIGITS)")
    try:
        return tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UntrustedTextError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except UntrustedTextError:
        raise
    except tomllib.TOMLDecodeError as exc:
        raise UntrustedTextError(f"not valid TOML ({exc})") from None
    except (ValueError, RecursionError) as exc:  # tomllib's int() of a huge literal; a depth our scan missed
        raise UntrustedTextError(f"not valid TOML ({type(exc).__name__}: {exc})") from None
