"""Every command-line option, declared once: its flag, its type and its help.

Commands take these as parameter types (`reference: ReferenceOption = None`), so an option reads
the same on every command that has it. Every choice is an enum, so `--help` lists its values.
`-o/--output` means one thing everywhere: the checkpoint the command writes. The machine-readable
result of every command is `--json` (printed on stdout) or `--report FILE` (the same object,
written to FILE); `-q/--quiet` prints nothing on success.

Add an option here, then to the signature of each command that takes it, then to the request the
command builds (`MigrationRequest`, `VerifyRequest`, ...) by keyword.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from convmigrate.vocab import DEFAULT_FORMAT, FORMATS, Format, Framework, Layout


def _format_choices(name: str, framework: Framework) -> type[enum.Enum]:
    """A migration's --format choices: the target's writable formats, by extension, default first.

    "safetensors" on a migration is the target framework's flavour (see formats/naming.py), so
    torch2ms offers [ckpt|safetensors] and ms2torch [pt|safetensors]. Built from vocab.FORMATS:
    a new format appears here without an edit.
    """
    formats = sorted((f for f in Format if f.writable and f.framework is framework),
                     key=lambda f: f is not DEFAULT_FORMAT[framework])
    values = dict.fromkeys(f.extension.lstrip(".") for f in formats)
    return enum.Enum(name, {value.upper().replace("-", "_"): value for value in values}, type=str)


class Target(str, enum.Enum):
    """`layers --to`: the framework to translate into."""

    MS = "ms"
    TORCH = "torch"

    @property
    def framework(self) -> Framework:
        return Framework.MINDSPORE if self is Target.MS else Framework.TORCH


MindSporeFormat = _format_choices("MindSporeFormat", Framework.MINDSPORE)
TorchFormat = _format_choices("TorchFormat", Framework.TORCH)
# convert's --format: every format with a writer (a read-only one, such as .nemo, is no choice).
WritableFormat = enum.Enum("WritableFormat", {f.name: f.value for f in Format if f.writable}, type=str)

# -- what a command reads ---------------------------------------------------------------------
_READABLE = ", ".join(dict.fromkeys(e for spec in FORMATS.values() if spec.reader for e in spec.extensions))
InputPath = Annotated[
    Path, typer.Argument(help=f"A checkpoint ({_READABLE}, *.safetensors.index.json); the format is judged by content.",
                         show_default=False)
]
OriginalPath = Annotated[Path, typer.Argument(help="The checkpoint before migration.", show_default=False)]
ConvertedPath = Annotated[Path, typer.Argument(help="The migrated checkpoint.", show_default=False)]
LayerSource = Annotated[
    str,
    typer.Argument(
        help="A constructor expression such as \"torch.nn.Conv1d(120, 240, 4, padding=1)\", a PyTorch model factory "
        "package.module:callable (imported and run: trusted code only), or a layers JSON.",
        show_default=False,
    ),
]
TrustPickleOption = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Load a torch.save file with torch.load, running the code its pickle names. Not needed to read any "
        "file's tensors (config objects, whole models and code beside the state dict are read without running "
        "anything); only for a file you trust whose tensors that code builds (the reader notes such entries as "
        "left out). Needs convmigrate[torch].",
    ),
]
SelectOption = Annotated[
    str | None,
    typer.Option(
        "--select",
        metavar="KEY[.KEY...]",
        help="The state dict to read in a torch.save file that holds several, by its keys: discriminator, "
        "model.ema. Default: the first found (the reader's note names the others). verify: the ORIGINAL's.",
        show_default=False,
    ),
]

# -- what a command writes --------------------------------------------------------------------
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Where to write the checkpoint (default: beside the input, with the "
                 "format's extension). A name ending in .index.json writes a sharded model: the index, and its "
                 "shards beside it (out/model.safetensors.index.json -> out/model-00001-of-00004.safetensors, ...; "
                 "model.ckpt.index.json: .ckpt shards). A sharded input without -o gives a sharded output.",
                 show_default=False),
]
MaxShardSizeOption = Annotated[
    str | None,
    typer.Option("--max-shard-size", help="Split a sharded output anew into shards of at most this size, as "
                 "transformers spells it: 5GB, 500MB, 2GiB (default: the input's shards).", show_default=False),
]
JobsOption = Annotated[
    int | None,
    typer.Option("--jobs", "-j", help="Shards of a sharded output written at once, each by its own process "
                 "(default: one per core).", min=1, show_default=False),
]
ConvertFormatOption = Annotated[
    WritableFormat | None,
    typer.Option("--format", "-f", help="Output format (default: from -o's extension).", case_sensitive=False,
                 show_default=False),
]
MindSporeFormatOption = Annotated[
    MindSporeFormat | None,
    typer.Option("--format", "-f", help="Output format; safetensors is MindSpore's flavour (default: from -o's "
                 "extension, else ckpt).", case_sensitive=False, show_default=False),
]
TorchFormatOption = Annotated[
    TorchFormat | None,
    typer.Option("--format", "-f", help="Output format (default: from -o's extension, else pt).",
                 case_sensitive=False, show_default=False),
]
LayoutOption = Annotated[
    Layout,
    typer.Option("--layout", help="nn: mindspore.nn layers; mint: mindspore.mint.nn (PyTorch names and shapes).",
                 case_sensitive=False),
]
CrcOption = Annotated[bool, typer.Option("--crc", help="Append MindSpore's CRC32 tail (.ckpt output only).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing output file (regular files only).")]
NoFsyncOption = Annotated[
    bool,
    typer.Option(
        "--no-fsync",
        help="Rename the output into place without waiting for it to reach the disk, as cp and torch.save do: "
        "faster on big files; a power loss soon after may leave a damaged file.",
    ),
]

# -- how a migration decides --------------------------------------------------------------------
ReferenceOption = Annotated[
    Path | None, typer.Option("--reference", help="A checkpoint of the target model: exact names and shapes.")
]
RulesOption = Annotated[Path | None, typer.Option("--rules", help="A TOML file of extra name rules (see README).")]
Conv1dOption = Annotated[
    list[str] | None, typer.Option("--conv1d", help="Glob of Conv1d weight names (repeatable).", show_default=False)
]
ExcludeOption = Annotated[
    list[str] | None, typer.Option("--exclude", help="Glob of names to leave untouched (repeatable).", show_default=False)
]
FoldOption = Annotated[
    bool, typer.Option("--fold-weight-norm", help="Fold weight_g/weight_v (or parametrizations) into one weight.")
]
KeepExtrasOption = Annotated[bool, typer.Option("--keep-extras", help="Keep optimizer state, counters and plain values.")]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", help="package.module:callable building the PyTorch model (trusted code): exact layer "
                 "kinds, real conv hyperparameters, a layers JSON beside the output."),
]
MsModelReferenceOption = Annotated[
    str | None,
    typer.Option("--ms-model", help="package.module:callable building the MindSpore network (trusted code; needs "
                 "the mindspore extra): every target name and shape from its parameters; a parameter left unfilled "
                 "or a tensor with no home fails the run."),
]
ModelReferenceOption = Annotated[
    str | None,
    typer.Option("--model", help="package.module:callable building the PyTorch model (trusted code; needs the torch "
                 "extra): every target name and shape from its state dict; a parameter left unfilled or a tensor "
                 "with no home fails the run."),
]
StrictOption = Annotated[bool, typer.Option("--strict", help="Fail on every guess and every reference mismatch.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")]

# -- how verification runs ---------------------------------------------------------------------
NoVerifyOption = Annotated[bool, typer.Option("--no-verify", help="Skip the verification of the output.")]
LayersOption = Annotated[
    Path | None,
    typer.Option("--layers", help="Layers JSON (convmigrate layers --report): verify each conv with its real "
                 "hyperparameters."),
]
RtolOption = Annotated[float | None, typer.Option("--rtol", help="Relative tolerance (default by dtype: 1e-5 for float32).")]
AtolOption = Annotated[float | None, typer.Option("--atol", help="Absolute tolerance (default by dtype: 1e-6 for float32).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the random verification inputs.")]

# -- compare ----------------------------------------------------------------------------------------
WeightsPath = Annotated[
    Path, typer.Argument(help="The PyTorch checkpoint (or a MindSpore one), in any format convmigrate reads.",
                         show_default=False)
]
TorchModelOption = Annotated[
    str, typer.Option("--torch-model", help="package.module:callable building the PyTorch model (your own, trusted "
                      "code, importable from the current directory).", show_default=False)
]
MsModelOption = Annotated[
    str, typer.Option("--ms-model", help="package.module:callable building the ported MindSpore network (your own, "
                      "trusted code, importable from the current directory).", show_default=False)
]
InputShapeOption = Annotated[
    list[str] | None,
    typer.Option("--input", help="Shape of a float32 standard-normal input, e.g. 2,4,50 (repeatable: the forward "
                 "call's positional arguments, in order).", show_default=False),
]
InputsFileOption = Annotated[
    Path | None,
    typer.Option("--inputs", help="An .npz (numpy.savez) of inputs: arr_0, arr_1, ... are positional arguments "
                 "after the --input ones, other names keyword arguments (integer ids come this way).",
                 dir_okay=False, show_default=False),
]
KeepConvertedOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Keep the converted checkpoint here, once the port is proven.", dir_okay=False,
                 show_default=False),
]
CompareRtolOption = Annotated[
    float | None,
    typer.Option("--rtol", help="Relative tolerance, of each tensor's largest magnitude (default 1e-4, measured: see "
                 "README).", show_default=False),
]
CompareAtolOption = Annotated[
    float | None, typer.Option("--atol", help="Absolute tolerance (default 0).", show_default=False)
]

# -- layers ---------------------------------------------------------------------------------------
ToOption = Annotated[
    Target | None,
    typer.Option("--to", help="Target framework (default: the other one; nn.Conv1d alone: ms).", case_sensitive=False),
]

# -- inspect --------------------------------------------------------------------------------------
NoHashOption = Annotated[
    bool, typer.Option("--no-hash", help="Skip the SHA-256 of each tensor in the report (faster on huge files).")
]

# -- what every command prints ---------------------------------------------------------------------
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report (one JSON object) on stdout instead of tables.")]
ReportOption = Annotated[
    Path | None,
    typer.Option("--report", help="Also write the report (the object --json prints) to this file."),
]
JunitOption = Annotated[
    Path | None, typer.Option("--junit", help="Write one JUnit test case per layer (CI dashboards).")
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Print nothing on success; on failure only the error and the failing names."),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")]
