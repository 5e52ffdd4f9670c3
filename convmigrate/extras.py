"""Optional dependencies: imported where a feature needs them, a one-line error where missing.

`pip install convmigrate` reads and writes every format with numpy alone; torch comes with
`convmigrate[torch]`, for the features that need a real framework at run time (`--model`,
`--trust-pickle`). A feature asks for its module here instead of importing it, so that a missing
extra is `MissingExtraError` ("--trust-pickle needs torch, which is not installed: pip install
'convmigrate[torch]'"), exit 2, never a ModuleNotFoundError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from convmigrate.errors import MissingExtraError


def require(module: str, extra: str, feature: str) -> ModuleType:
    """`module`, imported; MissingExtraError naming `extra` when it, or the package `extra`
    that it imports (e.g. a module of ours that imports torch), is not installed.

    Example:
        >>> require("json", "json", "this example").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing.partition(".")[0] == extra or module == missing or module.startswith(f"{missing}."):
            raise MissingExtraError(extra, feature) from None
        raise


__all__ = ["require"]
