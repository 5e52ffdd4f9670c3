"""The user's TOML rules (`--rules RULES.toml`), which extend the built-in tables.

    # a layer the built-in rules cannot recognise, named by a glob over layer names
    [[layer]]
    match = "encoder.*.final_ln"
    kind = "Norm"                 # a kind from rules/names.py PARAM_NAMES, or one defined below

    # a parameter of a (new or built-in) kind; omit `mindspore` for "MindSpore has none"
    [[param]]
    kind = "RMSNorm"
    torch = "weight"
    mindspore = "gamma"

    # module paths that differ between the two model implementations (applied both ways)
    [[prefix]]
    torch = "encoder.layers."
    mindspore = "encoder.layer."

    # Conv1d weights by name, and tensors to leave untouched (added to --conv1d / --exclude)
    [conv1d]
    include = ["*.conv.weight"]
    exclude = ["*.stft.weight"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convmigrate.errors import UsageError
from convmigrate.limits import USER_FILE_MAX_BYTES
from convmigrate.rules.names import NameRules, ParamName, family_named
from convmigrate.untrusted import UntrustedTextError, load_toml, read_bounded


@dataclass
class UserRules:
    names: NameRules = field(default_factory=NameRules)
    conv1d: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


def _strings(table: dict, key: str, where: str, required: bool = True) -> str | None:
    value = table.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where}: '{key}' must be a string")
    return value


def load_rules(path: Path | None) -> UserRules:
    """The built-in rules, extended by the TOML file at `path` (if any)."""
    rules = UserRules()
    if path is None:
        return rules
    try:
        data = load_toml(read_bounded(Path(path)), max_bytes=USER_FILE_MAX_BYTES)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the rules file ({exc.strerror})") from exc
    except UntrustedTextError as exc:
        raise UsageError(f"{path}: not a rules file ({exc})") from None
    unknown = set(data) - {"layer", "param", "prefix", "conv1d"}
    if unknown:
        raise UsageError(f"{path}: unknown section(s) {sorted(unknown)}; use layer, param, prefix, conv1d")
    for index, param in enumerate(data.get("param", [])):
        where = f"{path}: [[param]] #{index + 1}"
        kind = family_named(_strings(param, "kind", where))
        entry = ParamName(_strings(param, "torch", where), _strings(param, "mindspore", where, required=False))
        kept = [p for p in rules.names.param_names.get(kind, ()) if p.torch != entry.torch]
        rules.names.param_names[kind] = (*kept, entry)
    for index, layer in enumerate(data.get("layer", [])):
        where = f"{path}: [[layer]] #{index + 1}"
        kind = family_named(_strings(layer, "kind", where))
        if kind not in rules.names.param_names:
            raise UsageError(f"{where}: unknown kind {kind!r}; define its parameters with [[param]] first")
        pattern = _strings(layer, "match", where)
        rules.names.forced_kinds.append((pattern, kind, f"--rules: layer matches {pattern!r}"))
    for index, prefix in enumerate(data.get("prefix", [])):
        where = f"{path}: [[prefix]] #{index + 1}"
        rules.names.prefixes.append((_strings(prefix, "torch", where), _strings(prefix, "mindspore", where)))
    conv = data.get("conv1d", {})
    rules.conv1d = list(conv.get("include", []))
    rules.exclude = list(conv.get("exclude", []))
    return rules
