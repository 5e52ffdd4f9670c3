"""Text from a file, made safe to show: the one place that escapes names, values, notes and errors.

A checkpoint names its tensors, and those names reach the terminal, CI logs, JUnit XML and the
GitHub step summary. A name may hold an escape sequence (ESC [31m recolours a terminal, ESC ]0;
retitles it), a newline (which would forge a row such as "error: ..."), a lone surrogate (which
no encoder accepts), or a bidirectional override that reorders what is shown. `printable` turns
each such character into its visible Python escape (\\x1b, \\n, \\ud800, \\u202e); every other
character, accented or not, is left as it is. Rich markup is the renderer's business: the CLI
shows these strings as plain text, never as markup.
"""

from __future__ import annotations

import unicodedata

# Control characters (Cc), format characters such as bidi overrides and zero-width joiners
# (Cf), surrogates (Cs, never valid in UTF-8), private use (Co), unassigned code points (Cn),
# and the line and paragraph separators (Zl, Zp) that some terminals and editors break lines at.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object) -> str:
    """`str(value)` on one line, with every character that could act on a terminal escaped.

    Example:
        >>> printable("conv\\x1b[31m.weight\\nerror: forged")
        'conv\\\\x1b[31m.weight\\\\nerror: forged'
        >>> printable("enc.gain_µ.weight"), printable("bad\\ud800")
        ('enc.gain_µ.weight', 'bad\\\\ud800')
    """
    text = str(value)
    if text.isprintable():  # the common case: nothing to do (isprintable is False for all of the above)
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES else c for c in text)
