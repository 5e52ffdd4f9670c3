"""The Python API: the CLI's commands as functions, for notebooks and pipelines.

Each function takes the command's options as keyword arguments and returns a result object whose
`to_json()` is the command's report (what `--json` prints and `--report` writes). Errors are the
project's typed errors (`convmigrate.errors`): `UsageError` and `UnreadableCheckpointError` for a
bad request or input, `CheckFailedError` for a migration or verification that failed its checks
(with `check=False` the failing result is returned instead, and `result.ok` is False).

Example:
    >>> import convmigrate
    >>> result = convmigrate.torch2ms("fixtures/tiny_tcn.pt", "tiny.safetensors", fold_weight_norm=True)
    >>> result.ok, result.output_format.value, result.verification.passed
    (True, 'ms-safetensors', True)
    >>> convmigrate.ms2torch("tiny.safetensors", "back.pt").to_json()["plan"]["counts"]["reshape"]
    4
    >>> convmigrate.inspect("back.pt").summary["tensor_count"]
    17

This module imports nothing heavy: NumPy and the readers load on the first call, and torch only
for what needs it (`model=`, or a .pt that only torch.load can read).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from convmigrate.compare import CompareResult
    from convmigrate.contents import Contents
    from convmigrate.conversion import ConversionResult
    from convmigrate.errors import CheckFailedError
    from convmigrate.migrate import MigrationRequest, MigrationResult, ProgressFactory
    from convmigrate.verify.files import VerifyResult
    from convmigrate.verify.results import Verification
    from convmigrate.vocab import Format, Layout

PathLike = str | Path


class _Result(Protocol):
    def error(self) -> CheckFailedError | None: ...

    def failures(self) -> list[str]: ...

    def to_json(self) -> dict: ...


R = TypeVar("R", bound=_Result)


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


def _side_outputs(report: PathLike | None, junit: PathLike | None = None) -> dict[str, Path]:
    """The report files a call writes, by the CLI option that names them (for its error messages)."""
    return {flag: Path(path) for flag, path in (("--report", report), ("--junit", junit)) if path is not None}


def _finish(result: R, check: bool, report: PathLike | None, junit: PathLike | None = None,
            verification: Verification | None = None, suite: str = "") -> R:
    """Write the result's report files, then raise its error (with the result attached) if `check`."""
    from convmigrate.reports import write_junit, write_report

    if report is not None:
        write_report(Path(report), result.to_json())
    if junit is not None:
        write_junit(Path(junit), verification, suite, result.failures())
    error = result.error()
    if check and error is not None:
        error.result = result
        raise error
    return result


def _migrate(request: MigrationRequest, check: bool, progress: ProgressFactory | None,
             report: PathLike | None, junit: PathLike | None) -> MigrationResult:
    from convmigrate.migrate import no_progress, run_migration

    request.side_outputs = _side_outputs(report, junit)
    result = run_migration(request, progress or no_progress)
    return _finish(result, check, report, junit, result.verification, request.direction.value)


def torch2ms(
    input: PathLike,
    output: PathLike | None = None,
    *,
    format: str | Format | None = None,
    layout: str | Layout = "nn",
    reference: PathLike | None = None,
    rules: PathLike | None = None,
    conv1d: Sequence[str] = (),
    exclude: Sequence[str] = (),
    fold_weight_norm: bool = False,
    keep_extras: bool = False,
    crc: bool = False,
    model: str | None = None,
    ms_model: str | None = None,
    strict: bool = False,
    dry_run: bool = False,
    verify: bool = True,
    layers: PathLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    force: bool = False,
    fsync: bool = True,
    trust_pickle: bool = False,
    max_shard_size: str | int | None = None,
    jobs: int | None = None,
    select: str | None = None,
    report: PathLike | None = None,
    junit: PathLike | None = None,
    check: bool = True,
    progress: ProgressFactory | None = None,
) -> MigrationResult:
    """PyTorch checkpoint -> MindSpore (.ckpt or safetensors), verified: `convmigrate torch2ms`.

    Args: the options of `convmigrate torch2ms --help`, by name (`ms_model` is --ms-model, `verify=False` is --no-verify,
    `fsync=False` --no-fsync). `check=False` returns a failing result instead of raising
    `CheckFailedError`. `progress(total_bytes)` may return a context yielding a callback(bytes).
    An `output` ending in `.index.json` (or a sharded input without one) writes a sharded model,
    `jobs` shards at a time (default: one per core), split anew by `max_shard_size` ("5GB").
    Returns: a `MigrationResult` (`.ok`, `.output`, `.shards`, `.plan`, `.verification`, `.to_json()`).
    """
    from convmigrate.migrate import MigrationRequest
    from convmigrate.plan import Direction
    from convmigrate.vocab import Layout

    return _migrate(MigrationRequest(
        input=Path(input), direction=Direction.TORCH_TO_MS, output=_path(output), output_format=format,
        layout=Layout(layout), reference=_path(reference), rules=_path(rules), conv1d=list(conv1d),
        exclude=list(exclude), fold_weight_norm=fold_weight_norm, keep_extras=keep_extras, crc=crc, model=model,
        ms_model=ms_model, strict=strict, dry_run=dry_run, verify=verify, layers=_path(layers), rtol=rtol, atol=atol, seed=seed,
        force=force, fsync=fsync, trust_pickle=trust_pickle, max_shard_size=max_shard_size, jobs=jobs, select=select,
    ), check, progress, report, junit)


def ms2torch(
    input: PathLike,
    output: PathLike | None = None,
    *,
    format: str | Format | None = None,
    reference: PathLike | None = None,
    rules: PathLike | None = None,
    conv1d: Sequence[str] = (),
    exclude: Sequence[str] = (),
    fold_weight_norm: bool = False,
    keep_extras: bool = False,
    model: str | None = None,
    strict: bool = False,
    dry_run: bool = False,
    verify: bool = True,
    layers: PathLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    force: bool = False,
    fsync: bool = True,
    trust_pickle: bool = False,
    max_shard_size: str | int | None = None,
    jobs: int | None = None,
    select: str | None = None,
    report: PathLike | None = None,
    junit: PathLike | None = None,
    check: bool = True,
    progress: ProgressFactory | None = None,
) -> MigrationResult:
    """MindSpore checkpoint -> PyTorch (.pt or safetensors), verified: `convmigrate ms2torch`.

    Args and returns as `torch2ms` (without `layout`, `crc` and `ms_model`); `model` here builds
    the PyTorch model that is the exact reference of every target name and shape.
    """
    from convmigrate.migrate import MigrationRequest
    from convmigrate.plan import Direction

    return _migrate(MigrationRequest(
        input=Path(input), direction=Direction.MS_TO_TORCH, output=_path(output), output_format=format,
        reference=_path(reference), rules=_path(rules), conv1d=list(conv1d), exclude=list(exclude),
        fold_weight_norm=fold_weight_norm, keep_extras=keep_extras, model=model, strict=strict, dry_run=dry_run,
        verify=verify, layers=_path(layers), rtol=rtol, atol=atol, seed=seed, force=force, fsync=fsync, trust_pickle=trust_pickle,
        max_shard_size=max_shard_size, jobs=jobs, select=select,
    ), check, progress, report, junit)


def verify(
    original: PathLike,
    converted: PathLike,
    *,
    layers: PathLike | None = None,
    rules: PathLike | None = None,
    conv1d: Sequence[str] = (),
    exclude: Sequence[str] = (),
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    trust_pickle: bool = False,
    select: str | None = None,
    report: PathLike | None = None,
    junit: PathLike | None = None,
    check: bool = True,
) -> VerifyResult:
    """Prove that CONVERTED computes what ORIGINAL did: `convmigrate verify`.

    Returns: a `VerifyResult` (`.ok`, `.failures()`, `.verification`, `.to_json()`); raises
    `CheckFailedError` when a layer or tensor differs, unless `check=False`.
    """
    from convmigrate.formats.atomic import check_side_outputs
    from convmigrate.verify.files import VerifyRequest, verify_files

    request = VerifyRequest(
        original=Path(original), converted=Path(converted), layers=_path(layers), rules=_path(rules),
        conv1d=list(conv1d), exclude=list(exclude), rtol=rtol, atol=atol, seed=seed, trust_pickle=trust_pickle,
        select=select,
    )
    check_side_outputs(_side_outputs(report, junit), request.inputs, [])
    result = verify_files(request)
    return _finish(result, check, report, junit, result.verification, "verify")


def compare(
    weights: PathLike,
    *,
    torch_model: str,
    ms_model: str,
    inputs: Sequence[str] = (),
    inputs_file: PathLike | None = None,
    output: PathLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    force: bool = False,
    trust_pickle: bool = False,
    report: PathLike | None = None,
    junit: PathLike | None = None,
    check: bool = True,
) -> CompareResult:
    """Run the PyTorch model and its MindSpore port on the same inputs: `convmigrate compare`.

    Args: the options of `convmigrate compare --help`, by name (`inputs` are --input shapes such as
    "2,4,50", `inputs_file` the --inputs .npz, `output` -o). Needs torch and MindSpore.
    Returns: a `CompareResult` (`.ok`, `.outputs`, `.layers`, `.first_divergence()`, `.loads`,
    `.to_json()`); raises `CheckFailedError` when the port differs, unless `check=False`.
    """
    from convmigrate.compare import CompareRequest, run_compare
    from convmigrate.formats.atomic import check_side_outputs, write_small_file

    request = CompareRequest(
        weights=Path(weights), torch_model=torch_model, ms_model=ms_model, inputs=list(inputs),
        inputs_file=_path(inputs_file), output=_path(output), rtol=rtol, atol=atol, seed=seed, force=force,
        trust_pickle=trust_pickle,
    )
    check_side_outputs(_side_outputs(report, junit), request.read_files, [request.output] if request.output else [])
    result = run_compare(request)
    if junit is not None:
        write_small_file(Path(junit), result.junit_xml())
    return _finish(result, check, report)


def inspect(path: PathLike, *, hashes: bool = True, trust_pickle: bool = False, select: str | None = None,
            report: PathLike | None = None) -> Contents:
    """What a checkpoint holds: `convmigrate inspect --json` (`hashes=False` is --no-hash).

    Returns: a `Contents` whose `.to_json()` lists the format, every tensor (name, shape, dtype,
    bytes, SHA-256, Conv1d candidate), plain values, metadata and the reader's notes.
    """
    from convmigrate.contents import inspect_file
    from convmigrate.formats.atomic import check_side_outputs

    check_side_outputs(_side_outputs(report), [Path(path)], [])
    return _finish(inspect_file(Path(path), hashes=hashes, trust_pickle=trust_pickle, select=select), True, report)


def convert(
    input: PathLike,
    output: PathLike | None = None,
    *,
    format: str | Format | None = None,
    crc: bool = False,
    force: bool = False,
    fsync: bool = True,
    trust_pickle: bool = False,
    max_shard_size: str | int | None = None,
    jobs: int | None = None,
    select: str | None = None,
    report: PathLike | None = None,
    progress: ProgressFactory | None = None,
) -> ConversionResult:
    """Rewrite a checkpoint in another file format, bit-exactly: `convmigrate convert`.

    An `output` ending in `.index.json` writes a sharded model (as torch2ms does)."""
    from convmigrate.conversion import ConversionRequest, convert_file
    from convmigrate.migrate import no_progress

    return _finish(convert_file(ConversionRequest(
        input=Path(input), output=_path(output), output_format=format, crc=crc, force=force, fsync=fsync,
        trust_pickle=trust_pickle, select=select, side_outputs=_side_outputs(report), max_shard_size=max_shard_size, jobs=jobs,
    ), progress or no_progress), True, report)


__all__ = ["compare", "convert", "inspect", "ms2torch", "torch2ms", "verify"]
