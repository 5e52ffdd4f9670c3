"""Sharded outputs, written shard-parallel: each shard by its own job, verified on its own, then
all renamed into place, the index last.

Which tensor goes to which shard is decided first, from names and sizes alone (`assign`): the
input's own shards (a tensor goes where its source was), or, with --max-shard-size, a new split
in the input's order. Each shard is then a job: it opens the input itself (every shard of it,
lazily), writes its tensors into a file staged beside the output, and verifies that file
against the original tensors it came from. Jobs run in worker processes (Python work holds
the GIL, so threads would take turns); their outputs do not depend on how many there are, so
`--jobs 2` writes the bytes `--jobs 1` writes.

Nothing takes an output name until every shard is written and verified: then the shards are
renamed, and the index, written last, makes the model. A shard that fails (an error, or a
verification that fails) leaves no shard and no index behind, and the error names the shard
and the tensor being written.

Worker processes start with `fork` where the platform has it (measured: a pool of 2 workers
running 4 jobs in 0.19 s, against 3.2 s for `spawn`, which imports convmigrate and NumPy again
in each worker, and 2.6 s for `forkserver`), `spawn` elsewhere.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

from convmigrate.entries import Checkpoint, Entry, Extent, TensorEntry
from convmigrate.errors import ConvmigrateError, UnreadableCheckpointError, UsageError, WriteError
from convmigrate.formats import checkpoint_writer, open_checkpoint
from convmigrate.formats.atomic import check_output_path, commit_staged, stage_file, staged_output, staging_name
from convmigrate.formats.bytecopy import observed_copies
from convmigrate.formats.shards import index_text, parse_size, shard_paths, split_by_size
from convmigrate.migrate import ProgressFactory, target_entries
from convmigrate.plan import Op, Plan, Step
from convmigrate.verify import BackgroundVerification, Verification
from convmigrate.verify.conv import ConvSetup
from convmigrate.vocab import Format

PROGRESS_POLL_S = 0.2  # how often the parent reports the jobs' bytes written


def default_jobs() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- which tensor goes where


@dataclass(frozen=True)
class Item:
    """One thing to place: an output entry (its name, size, the input shard its bytes come from),
    or a dropped tensor, placed with its source so that a shard's verification accounts for it."""

    name: str | None  # the output entry (None: a step that writes nothing)
    nbytes: int
    numel: int
    is_tensor: bool
    input_shard: str | None  # None: no input shard (a created tensor, a value): it goes with the one before
    step: Step | None = None  # a migration's step for it


def assign(items: Sequence[Item], max_shard_size: str | int | None) -> list[list[Item]]:
    """The output's shards, in order: the input's boundaries, or a new split by size.

    The input's shards are ordered by file name (model-00001-of-00004 ... sorts as numbered);
    an item without an input shard follows the item before it. An output shard left empty
    (every tensor of an input shard dropped) is not written.

    Example:
        >>> items = [Item("a", 8, 2, True, "m-2"), Item("b", 4, 1, True, "m-1"), Item("c", 8, 1, True, None)]
        >>> [[i.name for i in shard] for shard in assign(items, None)]   # c follows b, the item before it
        [['b', 'c'], ['a']]
        >>> [[i.name for i in shard] for shard in assign(items, 12)]
        [['b', 'c'], ['a']]
    """
    rank_of = {name: rank for rank, name in enumerate(sorted({i.input_shard for i in items if i.input_shard}))}
    ranked: list[tuple[int, int, Item]] = []
    rank = 0
    for position, item in enumerate(items):
        rank = rank_of[item.input_shard] if item.input_shard is not None else rank
        ranked.append((rank, position, item))
    ordered = [item for _, _, item in sorted(ranked, key=lambda r: (r[0], r[1]))]
    if max_shard_size is not None:
        limit = parse_size(max_shard_size)
        return split_by_size([(item, item.nbytes if item.is_tensor else 0) for item in ordered], limit)
    groups: dict[int, list[Item]] = {}
    for rank, _, item in sorted(ranked, key=lambda r: (r[0], r[1])):
        groups.setdefault(rank, []).append(item)
    return [groups[rank] for rank in sorted(groups)] or [[]]


def input_shards(path: Path, checkpoint: Checkpoint) -> dict[str, str]:
    """tensor name -> input shard file, for a sharded safetensors input (empty otherwise)."""
    from convmigrate.formats.safetensors_file import read_index
    from convmigrate.formats.shards import is_sharded

    if not is_sharded(path) or checkpoint.format not in (Format.SAFETENSORS, Format.MS_SAFETENSORS):
        return {}
    weight_map, _ = read_index(path)
    return weight_map


def shard_metadata(path: Path, checkpoint: Checkpoint, metadata: Mapping[str, str]) -> dict[str, str]:
    """`metadata` without what a sharded input's index added to it (total_size belongs to the index)."""
    from convmigrate.formats.safetensors_file import read_index

    index_keys = set(read_index(path)[1]) if input_shards(path, checkpoint) else set()
    return {key: value for key, value in metadata.items() if key not in index_keys}


def index_has_parameters(path: Path, checkpoint: Checkpoint) -> bool:
    """Whether the output index states total_parameters: as the input's does, or (a single-file
    input) as transformers 5 writes it."""
    from convmigrate.formats.safetensors_file import read_index

    if not input_shards(path, checkpoint):
        return True
    return "total_parameters" in read_index(path)[1]


# --------------------------------------------------------------------------- one shard, in a job


@dataclass(frozen=True)
class JobSettings:
    """What every shard job of one run shares (pickled to each worker)."""

    input: Path
    trust_pickle: bool
    fmt: Format
    metadata: Mapping[str, str]
    crc: bool
    durable: bool
    verify: bool = False
    layers: Mapping[str, ConvSetup] | None = None
    tolerance: tuple[float | None, float | None] = (None, None)
    seed: int = 0
    plan: Plan | None = None  # a migration's plan without its steps (each job gets its own)


@dataclass
class ShardJob:
    """One shard: where it goes, and what it holds (a migration's steps, or a conversion's names)."""

    number: int
    path: Path
    temp: Path
    names: list[str]  # the output entries, in order
    steps: list[Step] | None  # migration: the plan's steps for these entries
    planned: dict[str, tuple[str, tuple[int, ...]]]  # input tensor -> (dtype, shape) it was planned with


@dataclass
class ShardOutcome:
    number: int
    path: Path
    tensors: int
    nbytes: int
    verification: Verification | None = None


class _Writing:
    """Which tensor a job is writing, for the error message."""

    def __init__(self) -> None:
        self.tensor: str | None = None
        self.finished = False

    def wrap(self, entries: Sequence[Entry]) -> list[Entry]:
        return [replace(e, source=_Named(e.source, e.name, self)) if isinstance(e, TensorEntry) else e for e in entries]

    def context(self, job: ShardJob) -> str:
        where = f"shard {job.path.name}"
        return where if self.tensor is None or self.finished else f"{where}, tensor {self.tensor!r}"


class _Named:
    """A byte source that tells `_Writing` whose bytes are being read."""

    def __init__(self, source, name: str, writing: _Writing) -> None:  # source: a ByteSource
        self.source, self.name, self.writing = source, name, writing

    def pieces(self, start: int, stop: int, piece_bytes: int):
        self.writing.tensor = self.name
        return self.source.pieces(start, stop, piece_bytes)

    def read(self, start: int, stop: int) -> memoryview:
        self.writing.tensor = self.name
        return self.source.read(start, stop)

    def extents(self, start: int, stop: int) -> list[Extent] | None:
        self.writing.tensor = self.name
        return self.source.extents(start, stop)


_job_progress = None  # in a worker: the shared counter of bytes written (a multiprocessing.Value)


def _init_worker(counter) -> None:
    global _job_progress
    _job_progress = counter


def _count_bytes(count: int) -> None:
    assert _job_progress is not None
    with _job_progress.get_lock():
        _job_progress.value += count


def _check_as_planned(job: ShardJob, by_name: Mapping[str, Entry], settings: JobSettings) -> None:
    """The job reopened the input: its tensors must be the ones the plan was made from."""
    for name, (dtype, shape) in job.planned.items():
        entry = by_name.get(name)
        if not isinstance(entry, TensorEntry) or entry.dtype.name != dtype or entry.shape != shape:
            raise UnreadableCheckpointError(settings.input, f"changed while it was read ({name!r} is not the tensor "
                                            "the plan was made from); run again once the files are complete")


def write_shard(settings: JobSettings, job: ShardJob, on_bytes: Callable[[int], None] | None = None) -> ShardOutcome:
    """Write and verify one shard into its staged file (a job: in a worker or in-process)."""
    writing = _Writing()
    on_bytes = on_bytes or (_count_bytes if _job_progress is not None else None)
    try:
        with open_checkpoint(settings.input, trust_pickle=settings.trust_pickle) as checkpoint:
            by_name = {e.name: e for e in checkpoint.entries}
            _check_as_planned(job, by_name, settings)
            plan = replace(settings.plan, steps=job.steps, problems=[]) if settings.plan is not None else None
            entries = target_entries(plan, checkpoint) if plan is not None else [by_name[n] for n in job.names]
            outcome = ShardOutcome(job.number, job.path, sum(isinstance(e, TensorEntry) for e in entries),
                                   sum(e.nbytes for e in entries if isinstance(e, TensorEntry)))
            verification = None
            if plan is not None and settings.verify:
                # The original's side: only the tensors this shard's steps read.
                sources = dict.fromkeys(s for step in plan.steps for s in step.sources)
                original = Checkpoint(checkpoint.format, [by_name[s] for s in sources], dict(checkpoint.metadata))
                verification = BackgroundVerification(plan, original, layers=settings.layers,
                                                      tolerance=settings.tolerance, seed=settings.seed)

            def checked(path: Path) -> None:
                """The shard holds exactly its entries; then (a migration) the verification."""
                writing.finished = True
                with open_checkpoint(path) as converted:
                    held = {e.name for e in converted.entries}
                    if held != set(job.names):
                        extra, lacking = sorted(held - set(job.names)), sorted(set(job.names) - held)
                        raise WriteError(f"the shard read back holds {extra or 'nothing'} it should not and lacks "
                                         f"{lacking or 'nothing'}; nothing was changed")
                    if verification is not None:
                        outcome.verification = verification.finish(converted)

            write = checkpoint_writer(settings.fmt, metadata=settings.metadata, crc=settings.crc, on_bytes=on_bytes)
            try:
                if verification is not None:
                    verification.start()
                observing = observed_copies(verification.observe) if verification is not None else contextlib.nullcontext()
                with observing, staged_output(job.temp, checked, settings.durable) as stream:
                    write(stream, writing.wrap(entries))
            finally:
                if verification is not None:
                    verification.stop()
            return outcome
    except ConvmigrateError as error:
        raise error.in_context(writing.context(job)) from None
    except OSError as error:
        raise WriteError(f"{writing.context(job)}: write failed ({error.strerror or error}); "
                         "nothing was changed") from None


# --------------------------------------------------------------------------- all shards


def _start_method() -> str:
    """fork where it is safe and available (Linux), else spawn (macOS's fork is not, Windows has none)."""
    return "fork" if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def run_jobs(settings: JobSettings, jobs: Sequence[ShardJob], workers: int, total: int,
             progress: ProgressFactory) -> list[ShardOutcome]:
    """Every shard job, on `workers` processes (in this one when 1 or a single shard); progress
    over `total` bytes."""
    if workers < 1:
        raise UsageError(f"--jobs {workers}: give at least 1")
    if workers == 1 or len(jobs) <= 1:
        with progress(total) as on_bytes:
            return [write_shard(settings, job, on_bytes) for job in jobs]
    context = multiprocessing.get_context(_start_method())
    counter = context.Value("q", 0)
    reported = 0
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_init_worker,
                             initargs=(counter,)) as pool:
        # Submitted (and, with fork, the workers forked) before the progress bar starts its thread:
        # a fork copies locks held by other threads, and a worker must never wait on one.
        futures: list[Future] = [pool.submit(write_shard, settings, job) for job in jobs]
        pending = set(futures)
        try:
            with progress(total) as on_bytes:
                while pending:
                    done, pending = wait(pending, timeout=PROGRESS_POLL_S, return_when=FIRST_EXCEPTION)
                    written = counter.value
                    if written > reported:
                        on_bytes(written - reported)
                        reported = written
                    for future in done:
                        if future.exception() is not None:
                            raise future.exception()  # type: ignore[misc]
        except BrokenProcessPool:
            pool.shutdown(cancel_futures=True)
            raise WriteError("a shard job ended without a word (killed, or out of memory?); nothing was written") from None
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the jobs under way finish; their files are discarded
            raise
        return [future.result() for future in futures]


@dataclass
class ShardedOutput:
    """A sharded output being made: its staged files, then committed (or discarded) as one."""

    index: Path
    paths: list[Path]
    temps: list[Path] = field(default_factory=list)
    index_temp: Path | None = None

    @classmethod
    def stage(cls, index: Path, count: int, inputs: Sequence[Path], force: bool) -> ShardedOutput:
        """Check every output path (not an input, --force for existing ones), then stage each."""
        paths = shard_paths(index, count)
        for path in paths:
            check_output_path(path, inputs, force)
        output = cls(index, paths)
        try:
            for path in paths:
                output.temps.append(staging_name(path))  # named first: discard() finds it whatever interrupts
                stage_file(path, output.temps[-1])
        except BaseException:
            output.discard()
            raise
        return output

    def commit(self, weight_map: Mapping[str, str], total_size: int, total_parameters: int | None,
               durable: bool) -> None:
        """Write the index (staged and checked too), then rename every shard, then the index."""
        import json

        text = index_text(weight_map, total_size, total_parameters)
        self.index_temp = staging_name(self.index)
        stage_file(self.index, self.index_temp)
        try:
            def same_index(path: Path) -> None:
                if json.loads(path.read_text(encoding="utf-8")) != json.loads(text):
                    raise WriteError(f"{self.index}: the index read back differs from the one written; nothing was changed")

            with staged_output(self.index_temp, same_index, durable) as stream:
                stream.write(text.encode("utf-8"))
            renamed: list[Path] = []
            try:
                for temp, path in zip(self.temps, self.paths):
                    commit_staged(temp, path)
                    renamed.append(path)
                commit_staged(self.index_temp, self.index)
            except BaseException:
                for path in renamed:  # no index: the shards renamed so far are no model
                    path.unlink(missing_ok=True)
                raise
        except OSError as exc:
            self.discard()
            raise WriteError(f"{self.index}: write failed ({exc.strerror or exc}); nothing was changed") from exc
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        for temp in [*self.temps, *([self.index_temp] if self.index_temp else [])]:
            temp.unlink(missing_ok=True)


def merged(outcomes: Sequence[ShardOutcome], seed: int) -> Verification | None:
    """One verification of the whole model from each shard's (None when none ran)."""
    parts = [o.verification for o in outcomes if o.verification is not None]
    if not parts:
        return None
    result = Verification(seed=seed)
    for part in parts:
        result.layers += part.layers
        result.tensors += part.tensors
        result.dropped += part.dropped
    return result


@dataclass
class ShardedWrite:
    """What a sharded write did: its shards, and (a migration) the merged verification."""

    shards: list[ShardOutcome]
    verification: Verification | None
    written: bool


def write_sharded(
    index: Path,
    checkpoint: Checkpoint,
    entries: Sequence[Entry],
    settings: JobSettings,
    *,
    steps: Sequence[Step] | None,
    inputs: Sequence[Path],
    max_shard_size: str | int | None,
    jobs: int | None,
    force: bool,
    progress: ProgressFactory,
) -> ShardedWrite:
    """Write `entries` (lazy) as the sharded model `index`: placed (`assign`), staged, written by
    `jobs` workers, verified, and committed only when every shard passed.

    `steps` is a migration's whole plan (`entries` are its written steps' targets, in order),
    None for a conversion (`entries` are the input's). `checkpoint` is the open input: its own
    shards give the boundaries.
    """
    weight_map_in = input_shards(settings.input, checkpoint)

    def input_shard(sources: Sequence[str]) -> str | None:
        return next((weight_map_in[s] for s in sources if s in weight_map_in), None)

    items: list[Item] = []
    written = iter(entries)
    for step in steps if steps is not None else [None] * len(entries):
        if step is not None and step.op is Op.DROP:  # placed with its source (accounted for), writes nothing
            items.append(Item(None, 0, 0, False, input_shard(step.sources), step))
            continue
        entry = next(written)
        tensor = isinstance(entry, TensorEntry)
        items.append(Item(entry.name, entry.nbytes if tensor else 0, entry.numel if tensor else 0, tensor,
                          input_shard(step.sources if step is not None else [entry.name]), step))
    groups = assign(items, max_shard_size)
    shard_files = [settings.input.parent / name for name in dict.fromkeys(weight_map_in.values())]
    output = ShardedOutput.stage(index, len(groups), [*inputs, *shard_files], force)
    planned = {e.name: (e.dtype.name, e.shape) for e in checkpoint.tensors()}
    shard_jobs = []
    for number, (group, path, temp) in enumerate(zip(groups, output.paths, output.temps), start=1):
        read = dict.fromkeys(s for item in group for s in (item.step.sources if item.step else [item.name]))
        shard_jobs.append(ShardJob(number, path, temp, [item.name for item in group if item.name is not None],
                                   [item.step for item in group if item.step] if steps is not None else None,
                                   {s: planned[s] for s in read if s in planned}))
    try:
        outcomes = run_jobs(settings, shard_jobs, jobs or default_jobs(), sum(item.nbytes for item in items), progress)
    except BaseException:
        output.discard()
        raise
    verification = merged(outcomes, settings.seed)
    if verification is not None and not verification.passed:
        output.discard()
        return ShardedWrite(outcomes, verification, written=False)
    weight_map = {item.name: path.name for group, path in zip(groups, output.paths) for item in group
                  if item.is_tensor and item.name is not None}
    tensors = [item for item in items if item.is_tensor]
    total_parameters = sum(item.numel for item in tensors) if index_has_parameters(settings.input, checkpoint) else None
    output.commit(weight_map, sum(item.nbytes for item in tensors), total_parameters, settings.durable)
    return ShardedWrite(outcomes, verification, written=True)


__all__ = ["assign", "default_jobs", "write_sharded", "ShardedWrite", "JobSettings"]
