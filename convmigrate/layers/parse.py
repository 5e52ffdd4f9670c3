"""Reading a layer constructor expression safely: `ast`, literals only, never `eval`.

    "torch.nn.Conv1d(120, 240, 4, padding=1, padding_mode='reflect')"
    "nn.ConvTranspose1d(64, 32, 4, stride=2, padding=1)"     # nn.: the class name decides
    "mindspore.nn.Conv1d(120, 240, 4, pad_mode='same')"

Arguments may be numbers, strings, True/False/None, and tuples or lists of those (with a unary
minus). Names, calls, attributes, operators and starred arguments are refused, so an expression
like `__import__('os').system('x')` is an error, not an action.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from convmigrate.layers.spec import LayerExpressionError
from convmigrate.layers.tables import MODULE_PREFIXES, REQUIRED, SIGNATURES, Signature, kinds_by_class_name
from convmigrate.vocab import Framework, LayerKind

MAX_EXPRESSION_CHARS = 2000


@dataclass(frozen=True)
class ParsedLayer:
    """A constructor call read from text. `framework` is None when the class exists in both (nn.Conv1d)."""

    framework: Framework | None
    kind: LayerKind
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _dotted(node: ast.expr, text: str) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value, text)}.{node.attr}"
    raise LayerExpressionError(
        f"{text!r}: the callee must be a layer class such as torch.nn.Conv1d, not {type(node).__name__.lower()}"
    )


def _literal(node: ast.expr, what: str, text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        values = [_literal(item, what, text) for item in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else values
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    source = ast.get_source_segment(text, node) or type(node).__name__
    raise LayerExpressionError(
        f"{what} is {source!r}: only literals are accepted (numbers, strings, True/False/None, "
        "tuples and lists of them); the expression is parsed, never run"
    )


def _resolve_class(path: str, text: str) -> tuple[Framework | None, LayerKind]:
    module, _, class_name = path.rpartition(".")
    candidates: list[tuple[Framework, LayerKind]] = []
    for framework, prefixes in MODULE_PREFIXES.items():
        kind = kinds_by_class_name(framework).get(class_name)
        if kind is not None and module in prefixes:
            candidates.append((framework, kind))
    if not candidates:
        known = sorted({f"torch.nn.{s.class_name}" for s in SIGNATURES[Framework.TORCH].values()}
                       | {f"mindspore.nn.{s.class_name}" for s in SIGNATURES[Framework.MINDSPORE].values()})
        raise LayerExpressionError(f"{text!r}: {path} is not a layer this tool translates; known: {', '.join(known)}")
    if len(candidates) == 1:
        return candidates[0]
    kinds = {kind for _, kind in candidates}
    if len(kinds) != 1:  # pragma: no cover - the tables give each class name one kind
        raise LayerExpressionError(f"{text!r}: {path} is ambiguous")
    return None, candidates[0][1]


def parse_layer_expression(text: str) -> ParsedLayer:
    """Read `torch.nn.Conv1d(120, 240, 4, padding=1)` (or a MindSpore one) without running it.

    Example:
        >>> parse_layer_expression("torch.nn.Conv1d(2, 4, 3, padding='same')").kwargs
        {'padding': 'same'}
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise LayerExpressionError(f"layer expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise LayerExpressionError(f"{text!r} is not a Python expression ({exc.msg})") from None
    text = text.strip()
    call = tree.body
    if not isinstance(call, ast.Call):
        raise LayerExpressionError(f"{text!r}: expected one constructor call, e.g. torch.nn.Conv1d(120, 240, 4)")
    framework, kind = _resolve_class(_dotted(call.func, text), text)
    args = []
    for index, node in enumerate(call.args):
        if isinstance(node, ast.Starred):
            raise LayerExpressionError(f"{text!r}: starred arguments are not accepted")
        args.append(_literal(node, f"argument {index + 1}", text))
    kwargs: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise LayerExpressionError(f"{text!r}: **kwargs are not accepted; write each keyword")
        kwargs[keyword.arg] = _literal(keyword.value, f"keyword {keyword.arg}", text)
    return ParsedLayer(framework, kind, tuple(args), kwargs)


def bind(signature: Signature, framework: Framework, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """All of a constructor's kwargs (defaults filled in), or an error naming the bad argument."""
    where = f"{framework.value} {signature.class_name}"
    if len(args) > signature.positional:
        raise LayerExpressionError(f"{where} takes at most {signature.positional} positional arguments, got {len(args)}")
    bound = dict(zip(signature.names, args))
    for name, value in kwargs.items():
        if name not in signature.defaults:
            raise LayerExpressionError(
                f"{where} has no parameter {name!r}; its parameters are {', '.join(signature.names)}"
            )
        if name in bound:
            raise LayerExpressionError(f"{where} got {name!r} twice")
        bound[name] = value
    missing = [name for name, default in signature.params if default is REQUIRED and name not in bound]
    if missing:
        raise LayerExpressionError(f"{where} needs {', '.join(missing)}")
    return {name: bound.get(name, default) for name, default in signature.params}
