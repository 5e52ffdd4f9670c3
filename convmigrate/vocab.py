"""The project's vocabulary: dtypes, file formats, weight layouts, layer kinds and problem codes,
spelled once.

Every other module imports these names instead of spelling strings again. The dtype table is
the single place that knows how PyTorch, NumPy, safetensors and MindSpore name the same
element type, so a tensor crosses formats without its bytes ever being reinterpreted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    """One element type and its name in every format we read or write.

    `numpy` is the dtype NumPy stores the raw bytes in. bfloat16 has no NumPy dtype, so its
    bits are carried as uint16 and converted to float32 only for arithmetic (see `to_float32`).
    """

    name: str  # PyTorch's spelling without "torch.": the canonical name in reports and JSON
    numpy: np.dtype
    mindspore: str  # TensorProto.tensor_type in a MindSpore .ckpt
    safetensors: str  # dtype code in a safetensors header
    torch_storage: str | None  # legacy typed storage class torch.save pickles (None: not picklable)

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def is_floating(self) -> bool:
        return self.name in ("float16", "bfloat16", "float32", "float64")

    def to_float32(self, array: np.ndarray) -> np.ndarray:
        """The values of `array` (stored as this dtype) as float32 (float64 stays float64)."""
        if self.name == "bfloat16":
            # bfloat16 is the upper half of a float32: shift the bits back into place.
            return (array.astype(np.uint32) << 16).view(np.float32)
        if self.name == "float64":
            return array
        return array.astype(np.float32)

    def from_float32(self, array: np.ndarray) -> np.ndarray:
        """Round float values to this dtype (round-to-nearest-even for bfloat16, like torch)."""
        if self.name == "bfloat16":
            bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
            rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
            rounded = ((bits + rounding) >> 16).astype(np.uint16)
            nan = np.isnan(array)
            return np.where(nan, np.uint16(0x7FC0), rounded)
        return array.astype(self.numpy)


# name, numpy, MindSpore tensor_type, safetensors code, torch legacy storage class
_DTYPE_TABLE: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("float16", "<f2", "Float16", "F16", "HalfStorage"),
    ("bfloat16", "<u2", "BFloat16", "BF16", "BFloat16Storage"),
    ("float32", "<f4", "Float32", "F32", "FloatStorage"),
    ("float64", "<f8", "Float64", "F64", "DoubleStorage"),
    ("int8", "<i1", "Int8", "I8", "CharStorage"),
    ("int16", "<i2", "Int16", "I16", "ShortStorage"),
    ("int32", "<i4", "Int32", "I32", "IntStorage"),
    ("int64", "<i8", "Int64", "I64", "LongStorage"),
    ("uint8", "<u1", "UInt8", "U8", "ByteStorage"),
    ("uint16", "<u2", "UInt16", "U16", None),
    ("uint32", "<u4", "UInt32", "U32", None),
    ("uint64", "<u8", "UInt64", "U64", None),
    ("bool", "|b1", "Bool", "BOOL", "BoolStorage"),
)

DTYPES: dict[str, DType] = {
    name: DType(name, np.dtype(np_code), ms, st, storage)
    for name, np_code, ms, st, storage in _DTYPE_TABLE
}
BY_MINDSPORE: dict[str, DType] = {d.mindspore: d for d in DTYPES.values()}
BY_SAFETENSORS: dict[str, DType] = {d.safetensors: d for d in DTYPES.values()}
BY_TORCH_STORAGE: dict[str, DType] = {
    d.torch_storage: d for d in DTYPES.values() if d.torch_storage is not None
}


class Framework(str, enum.Enum):
    """Whose layout and parameter names a checkpoint follows."""

    TORCH = "torch"
    MINDSPORE = "mindspore"

    @property
    def other(self) -> Framework:
        return Framework.MINDSPORE if self is Framework.TORCH else Framework.TORCH


@dataclass(frozen=True)
class FormatSpec:
    """Everything the rest of the tool needs to know of one file format.

    `reader` / `writer` / `sniffer` are "module:function" names, imported on first use (so that
    reading a .ckpt never imports what a .pt needs). A sniffer takes (path, first 64 bytes) and
    says whether the file is this format; detection asks them in the order of `Format`.
    `extensions` judge an output path's format (the first one names new files).
    """

    framework: Framework
    extensions: tuple[str, ...]
    reader: str | None
    writer: str | None
    sniffer: str | None
    crc: bool = False  # the writer can append MindSpore's CRC-32 tail
    label: str = ""


class Format(str, enum.Enum):
    """A checkpoint file format. The value is what `--format` and `inspect --json` say.

    The members' order is the order detection asks their sniffers (safetensors first: a
    safetensors header length of 128 + 256k starts with the pickle protocol byte).
    """

    SAFETENSORS = "safetensors"  # plain safetensors (single file or a sharded index)
    MS_SAFETENSORS = "ms-safetensors"  # safetensors with metadata {"format": "ms"}
    TORCH = "pt"  # torch.save: zip (PyTorch >= 1.6) or legacy pickle
    NEMO = "nemo"  # a NeMo model archive: a tar (plain or gzipped) holding a torch.save zip
    CKPT = "ckpt"  # MindSpore protobuf checkpoint (mindspore.save_checkpoint)

    @property
    def spec(self) -> FormatSpec:
        return FORMATS[self]

    @property
    def framework(self) -> Framework:
        return self.spec.framework

    @property
    def extension(self) -> str:
        """The extension of a new file in this format."""
        return self.spec.extensions[0]

    @property
    def writable(self) -> bool:
        return self.spec.writer is not None


_ST = "convmigrate.formats.safetensors_file"
# One row per format: adding a format is a row here and its own module in formats/.
FORMATS: dict[Format, FormatSpec] = {
    Format.SAFETENSORS: FormatSpec(
        Framework.TORCH, (".safetensors",), f"{_ST}:read_safetensors", f"{_ST}:write_safetensors",
        f"{_ST}:sniff", label="safetensors",
    ),
    # Detected as SAFETENSORS; the reader tells MindSpore's flavour by its metadata.
    Format.MS_SAFETENSORS: FormatSpec(
        Framework.MINDSPORE, (".safetensors",), f"{_ST}:read_safetensors", f"{_ST}:write_ms_safetensors",
        None, label="MindSpore safetensors",
    ),
    Format.TORCH: FormatSpec(
        Framework.TORCH, (".pt", ".pth", ".bin"), "convmigrate.formats.torch_file:read_torch",
        "convmigrate.formats.torch_write:write_torch", "convmigrate.formats.torch_file:sniff", label="torch.save",
    ),
    Format.NEMO: FormatSpec(
        Framework.TORCH, (".nemo",), "convmigrate.formats.nemo:read_nemo", None, "convmigrate.formats.nemo:sniff",
        label="NeMo archive",
    ),
    Format.CKPT: FormatSpec(
        Framework.MINDSPORE, (".ckpt",), "convmigrate.formats.ckpt:read_ckpt", "convmigrate.formats.ckpt:write_ckpt",
        "convmigrate.formats.ckpt:sniff", crc=True, label="MindSpore .ckpt",
    ),
}

# What a migration writes into a framework when neither --format nor the output's extension says.
DEFAULT_FORMAT: dict[Framework, Format] = {Framework.TORCH: Format.TORCH, Framework.MINDSPORE: Format.CKPT}


class Layout(str, enum.Enum):
    """MindSpore's two Conv1d layer families, which store weights differently."""

    NN = "nn"  # mindspore.nn.Conv1d: weight (C_out, C_in/group, 1, K), gamma/beta norm names
    MINT = "mint"  # mindspore.mint.nn.Conv1d: PyTorch's names and (C_out, C_in/groups, K)


# MindSpore's save_checkpoint writes a tensor larger than this as several same-tag values.
MINDSPORE_SPLIT_BYTES = 512 * 1024 * 1024


class LayerKind(enum.StrEnum):
    """What a layer is: its module class, in PyTorch's spelling (the value reports and layers JSON use).

    The name rules rarely know this much (LayerNorm and GroupNorm have the same parameters): they
    decide a `ParamFamily`. `--model`, a layers JSON or a constructor expression name the kind.
    """

    CONV1D = "Conv1d"
    CONV_TRANSPOSE1D = "ConvTranspose1d"
    CONV2D = "Conv2d"
    LINEAR = "Linear"
    BATCH_NORM1D = "BatchNorm1d"
    LAYER_NORM = "LayerNorm"
    GROUP_NORM = "GroupNorm"
    INSTANCE_NORM1D = "InstanceNorm1d"
    EMBEDDING = "Embedding"
    PRELU = "PReLU"

    @property
    def is_conv(self) -> bool:
        """A 1-D conv: the kinds whose weight changes layout and whose hyperparameters translate."""
        return self in (LayerKind.CONV1D, LayerKind.CONV_TRANSPOSE1D)

    @property
    def family(self) -> ParamFamily:
        """The parameter family of this kind (InstanceNorm1d: BatchNorm's when it tracks statistics)."""
        return _FAMILY_OF_KIND[self]


class ParamFamily(enum.StrEnum):
    """Layer kinds whose parameters are named and shaped alike: what the name rules decide.

    rules/names.py maps each family's parameter names across frameworks; the user's TOML rules may
    add families of their own (plain strings beside these members).
    """

    CONV1D = "Conv1d"  # Conv1d, ConvTranspose1d: same names, the weight gains/loses the unit axis
    CONV2D = "Conv2d"  # Conv2d: same names and shapes in both frameworks
    LINEAR = "Linear"  # Linear <-> Dense: same names and shapes
    BATCH_NORM = "BatchNorm"  # BatchNorm, InstanceNorm with running statistics: gamma/beta/moving_*
    NORM = "Norm"  # LayerNorm, GroupNorm, affine InstanceNorm: gamma/beta
    EMBEDDING = "Embedding"  # weight <-> embedding_table
    PRELU = "PReLU"  # weight <-> w


_FAMILY_OF_KIND: dict[LayerKind, ParamFamily] = {
    LayerKind.CONV1D: ParamFamily.CONV1D,
    LayerKind.CONV_TRANSPOSE1D: ParamFamily.CONV1D,
    LayerKind.CONV2D: ParamFamily.CONV2D,
    LayerKind.LINEAR: ParamFamily.LINEAR,
    LayerKind.BATCH_NORM1D: ParamFamily.BATCH_NORM,
    LayerKind.LAYER_NORM: ParamFamily.NORM,
    LayerKind.GROUP_NORM: ParamFamily.NORM,
    LayerKind.INSTANCE_NORM1D: ParamFamily.NORM,
    LayerKind.EMBEDDING: ParamFamily.EMBEDDING,
    LayerKind.PRELU: ParamFamily.PRELU,
}


class ProblemCode(enum.StrEnum):
    """Why a tensor needs the user's attention: in a plan (`Problem.code`) or a verification.

    The value is what `--report` writes as `code`.
    """

    # the plan: decisions the user should confirm, or cannot be made
    GUESS = "guess"  # an uncertain rule decided the layer kind
    AMBIGUOUS = "ambiguous"  # undecided: neither shapes nor names tell the layer; names kept
    WEIGHT_NORM = "weight_norm"  # a weight-normalised layer kept as a pair (or whose pair does not fit)
    MISSING = "missing"  # the output lacks it: a reference name the input does not produce, or
    # (verification) a tensor the converted file should hold and does not
    UNEXPECTED = "unexpected"  # an input tensor that the reference does not have: not written
    SHAPE_MISMATCH = "shape_mismatch"  # the reference has the name with another shape
    DUPLICATE = "duplicate"  # two inputs would be written under one name
    PATTERN = "pattern"  # a --conv1d pattern names something that is not a Conv1d weight
    # the verification: what the converted file gets wrong (each names the tensor and its layer)
    EXTRA = "extra"  # a tensor of the converted file that no tensor of the original produces
    RENAMED = "renamed"  # an original tensor's bytes under a name it should not have
    DTYPE = "dtype"  # another element type than the original's
    SHAPE = "shape"  # another shape than the conversion gives
    BYTES = "bytes"  # moved bytes that are not the original's, bit for bit
    NUMERICS = "numerics"  # a layer that computes something else than the original
    UNCHECKABLE = "uncheckable"  # a layer verification could not run (its result is not a proof)
