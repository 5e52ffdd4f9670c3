"""The limits policy: what a file may claim before convmigrate refuses to read it.

Every size, count, depth and offset a checkpoint claims is checked against what the file holds
and against these bounds before anything is allocated, computed or looped over, so a hostile
file costs time and memory linear in its real size. Each limit is one `Limit` row: readers
import the constant, the README's limits table is generated from `LIMITS` (and a test keeps the
two equal), and an error that a limit raises names the limit.

Adding a limit: one constant here, one row in `LIMITS` saying what it bounds, why the value is
safe for real checkpoints, and how the reference library behaves (stricter, laxer, the same).
"""

from __future__ import annotations

from dataclasses import dataclass

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Limit:
    name: str  # the constant's name
    value: int
    bounds: str  # what it bounds, in a user's words
    why: str  # why this value, and what the reference library does


SAFETENSORS_MAX_HEADER = 100_000_000
SAFETENSORS_INDEX_MAX_BYTES = 16 * MiB
SAFETENSORS_MAX_SHARDS = 512
JSON_MAX_DEPTH = 127
JSON_MAX_NUMBER_DIGITS = 40
USER_FILE_MAX_BYTES = 16 * MiB
MAX_DIMS = 32
MAX_ENTRIES = 200_000
JSON_MAX_ITEMS = 2_000_000
MAX_DIM_PRODUCT = (1 << 63) - 1
# Verification's arrays for one conv (random input, padded input, outputs) are bounded by the
# weight's real elements, never by what a shape or a layers JSON claims: at most this many times
# the weight's element count, or the floor for small weights.
VERIFY_ELEMENTS_PER_WEIGHT = 64
VERIFY_ELEMENTS_FLOOR = 1 << 22
# The check of a translated conv (`convmigrate layers`, a layers JSON) runs random weights of at
# most 2 channels per group on inputs its hyperparameters size: their arrays stay under this.
LAYER_CHECK_MAX_ELEMENTS = 1 << 24
COMPARE_MAX_INPUT_BYTES = 1 * GiB
COMPARE_MAX_INPUT_ARRAYS = 256
COMPARE_MAX_RECORDED_BYTES = 2 * GiB
ZIP_MAX_DIRECTORY_BYTES = 64 * MiB
ZIP_MAX_RECORDS = 1 << 20
TORCH_MAX_PICKLE_BYTES = 256 * MiB
TORCH_MAX_SMALL_RECORD = 4 * KiB
ZIP_MAX_INFLATED_BYTES = 1 * GiB
NEMO_MAX_MEMBERS = 10_000
NEMO_MAX_HEADER_BYTES = 1 * MiB
NEMO_MAX_INFLATE_RATIO = 32

# torch pickles (formats/pickle_reader.py, state_dict.py): each bounds what a pickle may build.
PICKLE_MAX_NESTING = 1000
PICKLE_MAX_OBJECTS = 2_000_000
PICKLE_MAX_MEMO = 2_000_000
PICKLE_MAX_INT_BYTES = 1024
PICKLE_MAX_BYTES = 256 * MiB
TENSOR_MAX_DIMS = 64
TENSOR_MAX_DIM = 2**63 - 1
STATE_DICT_MAX_ENTRIES = 100_000
# What a torch file's tensors may take written out, as a multiple of the file's size, plus slack.
TORCH_OUTPUT_MAX_RATIO = 4
TORCH_OUTPUT_SLACK = 64 * MiB

LIMITS: tuple[Limit, ...] = (
    Limit("SAFETENSORS_MAX_HEADER", SAFETENSORS_MAX_HEADER, "bytes of the JSON header of a safetensors file",
          "the safetensors library's own limit (100 MB); the header length is also checked against the file size first"),
    Limit("SAFETENSORS_INDEX_MAX_BYTES", SAFETENSORS_INDEX_MAX_BYTES, "bytes of a sharded `*.index.json`",
          "a weight map of 16 MiB names ~200 000 tensors; the largest public models list a few thousand "
          "(transformers sets no limit)"),
    Limit("SAFETENSORS_MAX_SHARDS", SAFETENSORS_MAX_SHARDS, "shard files one index may name",
          "each shard keeps a file descriptor open while the checkpoint is read (the usual limit is 1 024); "
          "the largest public models have under 200 shards (transformers sets no limit)"),
    Limit("JSON_MAX_DEPTH", JSON_MAX_DEPTH, "nesting of [] and {} in any JSON or TOML we parse "
          "(safetensors header, metadata values, index, `--layers`, `--rules`)",
          "the safetensors library's own limit (serde_json refuses the 128th level); real files nest at most 5 "
          "deep; Python's parsers recurse once per level (a RecursionError at ~1 000)"),
    Limit("JSON_MAX_NUMBER_DIGITS", JSON_MAX_NUMBER_DIGITS, "digits of an integer read as an integer (JSON); "
          "digits of any number (TOML)",
          "an int64 has 19 digits; int() of a longer literal costs quadratic time, so in JSON it is read as a float, "
          "as the safetensors library reads it (and a shape or offset then refused); TOML integers are 64-bit"),
    Limit("USER_FILE_MAX_BYTES", USER_FILE_MAX_BYTES, "bytes of a `--layers` JSON or `--rules` TOML",
          "both are a few KB for real models"),
    Limit("MAX_ENTRIES", MAX_ENTRIES, "tensors and values in one checkpoint (a .ckpt's values, a safetensors "
          "header's records, a sharded index's weight map)",
          "each entry costs ~1 KB of memory before any tensor byte is read (a 10 MB .ckpt of 500 000 one-byte "
          "values took 636 MB); the largest public models hold under 100 000 tensors"),
    Limit("JSON_MAX_ITEMS", JSON_MAX_ITEMS, "items (commas) in one JSON text",
          "bounds the parser's memory before it runs (~150 bytes an item); a header of 200 000 tensors has "
          "~1.6 million; the safetensors library bounds only the header's bytes"),
    Limit("MAX_DIMS", MAX_DIMS, "dimensions of one tensor (safetensors shape, .ckpt dims)",
          "NumPy 1 holds at most 32 (the safetensors library's NumPy loader refuses more; MindSpore reshapes with "
          "NumPy); counted while the dims are read, so 80 000 claimed dims cost nothing"),
    Limit("MAX_DIM_PRODUCT", MAX_DIM_PRODUCT, "each dimension, and the product of a shape's non-zero dims "
          "times the element size (so zero-element tensors too)",
          "int64, what NumPy, torch and MindSpore index with: a .ckpt cannot even store a larger dim, and a "
          "safetensors dim of 2^63 would be written back wrong; the library's NumPy loader refuses these too"),
    Limit("VERIFY_ELEMENTS_PER_WEIGHT", VERIFY_ELEMENTS_PER_WEIGHT,
          "the largest array verification builds for one conv, per element of its weight",
          "a plain stride-1 check needs under 10x; a layers JSON's dilation, stride or groups claiming more "
          "fails that layer's check (exit 1) instead of allocating; the frameworks have no such check"),
    Limit("VERIFY_ELEMENTS_FLOOR", VERIFY_ELEMENTS_FLOOR,
          "the largest array verification builds for one conv, whatever its weight (16 MiB of float32)",
          "room for small layers with long dilated kernels; a zero-element weight is never run at all"),
    Limit("LAYER_CHECK_MAX_ELEMENTS", LAYER_CHECK_MAX_ELEMENTS,
          "the arrays the check of one translated conv builds (channels x samples), from its hyperparameters",
          "a 1024-group depthwise conv with a 2049-sample dilated kernel needs 4M; a kernel_size, dilation, stride, "
          "padding or groups claiming more is refused (exit 2); the frameworks allocate what they are told"),
    Limit("COMPARE_MAX_INPUT_BYTES", COMPARE_MAX_INPUT_BYTES, "all inputs of `compare` together (--input shapes and "
          "--inputs arrays)", "minutes of 16 kHz float32 audio in a batch fit many times; numpy.load has no bound"),
    Limit("COMPARE_MAX_INPUT_ARRAYS", COMPARE_MAX_INPUT_ARRAYS, "arrays in a `compare --inputs` .npz",
          "a forward call takes a handful of arguments; numpy.load has no bound"),
    Limit("COMPARE_MAX_RECORDED_BYTES", COMPARE_MAX_RECORDED_BYTES, "layer outputs `compare` keeps from the PyTorch "
          "run to pair with MindSpore's (later layers are listed as not recorded)",
          "a base-size speech model on seconds of audio records tens of MB; the outputs themselves are always compared"),
    Limit("PICKLE_MAX_NESTING", PICKLE_MAX_NESTING, "nesting of a torch pickle: open MARKs, tuples in tuples",
          "real checkpoints nest a few dozen levels; a 300 000-deep tuple crashes Python's hash() "
          "(and torch.load: we never hand such a file to torch)"),
    Limit("PICKLE_MAX_OBJECTS", PICKLE_MAX_OBJECTS, "objects a torch pickle builds (~11 per tensor)",
          "about 180 000 tensors; keeps a hostile pickle under ~400 MB of Python objects. torch.load has no bound"),
    Limit("PICKLE_MAX_MEMO", PICKLE_MAX_MEMO, "entries of a torch pickle's memo",
          "torch.save memoises ~8 per tensor; Python's unpickler allocates the memo up to the largest index "
          "(4 bytes: 32 GB), ours holds only the entries stored"),
    Limit("PICKLE_MAX_BYTES", PICKLE_MAX_BYTES, "one pickle of a legacy (pre-1.6) torch.save file, read into memory",
          "the pickle of a 180 000-tensor state dict takes ~20 MB; the storages after it are never read into memory. "
          "torch.load reads the whole file"),
    Limit("PICKLE_MAX_INT_BYTES", PICKLE_MAX_INT_BYTES, "bytes of one integer in a torch pickle",
          "a seed or RNG state takes 16; torch's weights_only unpickler refuses any integer over 255 bytes (LONG4), "
          "Python's reads any (int() of 10^6 decimal digits is quadratic)"),
    Limit("TENSOR_MAX_DIMS", TENSOR_MAX_DIMS, "dims of one tensor in a torch pickle",
          "torch's kernels stop at 25 dims, MindSpore's at 8; torch.load has no bound"),
    Limit("TENSOR_MAX_DIM", TENSOR_MAX_DIM, "one dim, stride or storage offset in a torch pickle",
          "torch's sizes are int64, as are safetensors' and MindSpore's; torch.load refuses larger ones too"),
    Limit("STATE_DICT_MAX_ENTRIES", STATE_DICT_MAX_ENTRIES, "names a whole pickled model's module tree gives",
          "a submodule shared by two parents is named twice, as by model.state_dict(): a hostile tree of "
          "shared modules would name 2^depth; real models have up to a few thousand (a 70B LLM: ~700)"),
    Limit("TORCH_OUTPUT_MAX_RATIO", TORCH_OUTPUT_MAX_RATIO, "tensor bytes a torch file may give, per byte of the file "
          "(+ TORCH_OUTPUT_SLACK)",
          "views and tied weights share a storage; each is written out whole (safetensors and .ckpt cannot share), "
          "so 1 MiB viewed by 1 000 tensors would write 1 GB. torch.load has no bound (it shares in memory)"),
    Limit("TORCH_OUTPUT_SLACK", TORCH_OUTPUT_SLACK, "tensor bytes a torch file may give beyond TORCH_OUTPUT_MAX_RATIO "
          "times its size", "lets small files hold an expanded (stride 0) tensor or two"),
    Limit("ZIP_MAX_DIRECTORY_BYTES", ZIP_MAX_DIRECTORY_BYTES, "the central directory of a .pt zip archive (read whole)",
          "torch.save writes ~100 bytes per tensor (6 MB for 60 000 tensors); miniz reads any size into memory"),
    Limit("ZIP_MAX_RECORDS", ZIP_MAX_RECORDS, "records in a .pt zip archive",
          "one record per storage: a million is far beyond any model; miniz allows 4 billion"),
    Limit("TORCH_MAX_PICKLE_BYTES", TORCH_MAX_PICKLE_BYTES, "the data.pkl record of a .pt, stored or inflated",
          "the pickle holds names, shapes and small values (~100 bytes per tensor); torch inflates any size"),
    Limit("TORCH_MAX_SMALL_RECORD", TORCH_MAX_SMALL_RECORD, "the version and byteorder records of a .pt",
          "torch.save writes 2 and 6 bytes; torch reads any size (a 1 GB 'version' of '3' and junk loads)"),
    Limit("ZIP_MAX_INFLATED_BYTES", ZIP_MAX_INFLATED_BYTES, "the deflate-compressed tensor records of a .pt together, inflated",
          "torch.save never compresses; torch.load inflates each record whole into memory (we stream them), "
          "so a 1 MB file of deflated zeros could claim 1 GB"),
    Limit("NEMO_MAX_MEMBERS", NEMO_MAX_MEMBERS, "members of a .nemo tar archive",
          "NeMo writes a config, the weights and a few tokenizer files; tarfile allows any number"),
    Limit("NEMO_MAX_HEADER_BYTES", NEMO_MAX_HEADER_BYTES, "one pax or GNU long-name header in a .nemo",
          "real ones hold a long name or a few timestamps; tarfile reads any claimed size into memory"),
    Limit("NEMO_MAX_INFLATE_RATIO", NEMO_MAX_INFLATE_RATIO, "a gzipped .nemo inflated, as a multiple of its size",
          "float weights barely compress (gzip: ~1.1x), text ~4x; bounds the inflating time and the temporary file"),
)


def shape_problem(shape: tuple[int, ...] | list[int], itemsize: int) -> str | None:
    """Why a claimed shape exceeds MAX_DIMS / MAX_DIM_PRODUCT (None when it does not).

    Cheap whatever the file claims: at most MAX_DIMS + 1 dims are looked at, and the running
    product stops as soon as it passes the bound.
    """
    if len(shape) > MAX_DIMS:
        return f"{len(shape)} dims, more than {MAX_DIMS} (MAX_DIMS)"
    product = itemsize
    for dim in shape:
        if dim < 0:
            return f"a negative dim {dim}"
        product *= dim or 1
        if product > MAX_DIM_PRODUCT:
            return "a size beyond 2^63 - 1 bytes, zero dims left out (MAX_DIM_PRODUCT)"
    return None


@dataclass(frozen=True)
class Deviation:
    """Where convmigrate reads a file differently from the format's reference library, on purpose."""

    format: str  # "safetensors", "sharded index", ".ckpt", ...
    case: str  # the kind of file, in a user's words
    library: str  # what the reference library does with it
    convmigrate: str  # what we do
    why: str


# Checked by tests/test_differential.py: each row there is a file built to show the difference.
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation("safetensors", "a key twice in one JSON object (a tensor name, a metadata key, a key of an ignored field)",
              "keeps the last (it refuses only a record field or __metadata__ twice)", "refuses the file",
              "two parsers can disagree on which one counts: the file is ambiguous"),
    Deviation("safetensors", "dtype C64, F8_*, F6_*, F4", "reads the raw bytes (its NumPy loader refuses all but C64)",
              "refuses, naming the dtype", "convmigrate carries the 13 dtypes that torch and MindSpore checkpoints share"),
    Deviation("safetensors", "more than 32 dims, or a dim product beyond 2^63 - 1 bytes (zero dims left out)",
              "reads the raw bytes (its NumPy loader refuses both)", "refuses, before any arithmetic on the dims",
              "MAX_DIMS / MAX_DIM_PRODUCT: neither framework can hold such a tensor, and a dim of 2^63 cannot be "
              "written into a .ckpt"),
    Deviation("sharded index", "a shard named by a path (`/abs`, `../x`, `a/b`) or another index, or a symlink "
              "leaving the index's folder or reaching an index", "transformers joins the name to the folder and opens whatever it names",
              "refuses, naming the index", "an index must not read files outside its own folder; a symlink to a file "
              "in the same folder is followed (it can reach nothing else)"),
    Deviation(".ckpt", "more than 32 dims", "reads them", "refuses the file",
              "MAX_DIMS: NumPy 1 (and so the tool's own arithmetic) holds at most 32"),
    Deviation(".ckpt", "content longer or shorter than its dims need", "builds the tensor anyway (past the bytes "
              "there are, or ignoring the rest)", "refuses, with both sizes", "the bytes and the shape disagree: "
              "either one is wrong"),
    Deviation(".ckpt", "dims [0] with no content", "a scalar made of no bytes", "a tensor of shape (0,)",
              "dims [0] is a scalar only when the content holds one element (MindSpore 1.x wrote scalars so)"),
    Deviation(".ckpt", "a CRC tail (b'crc_num' + 10 bytes) that does not match", "strips it unchecked unless "
              "load_checkpoint(crc_check=True)", "always checks it and refuses a mismatch",
              "the tail exists to detect damage; a wrong one means the bytes before it changed"),
    Deviation(".ckpt", "the same tag again after other values", "keeps the last value at the first one's place",
              "refuses the file", "ambiguous: which tensor is meant; MindSpore writes the parts of a tensor adjacently"),
    Deviation(".ckpt", "the parts of a split tensor disagree on dims", "takes the last part's dims for the joined bytes",
              "refuses the file", "save_checkpoint writes every part with the full dims; parts that disagree are damage"),
    Deviation(".ckpt", "a str value split over several values", "keeps the first piece, as long as the last one",
              "refuses the file", "MindSpore never splits a str; a split one cannot be read back as it was"),
    Deviation(".ckpt", "a protobuf field MindSpore's schema does not have (e.g. TensorProto field 4)",
              "skips it (protobuf keeps unknown fields)", "refuses the file",
              "an unknown field may change what the bytes mean; no MindSpore version writes one"),
    Deviation(".ckpt", "a value with neither tensor nor maptensor", "loads an empty list under that name",
              "refuses the file", "it holds no data that either framework could load into a parameter"),
    Deviation(".ckpt", "a value with no tag", "names it '' (the proto2 field is required, but not enforced)",
              "refuses the file", "a tensor without a name cannot be placed"),
    Deviation(".ckpt", "no values at all (only a CRC tail)", "refuses: 'the loaded parameter dict is empty'",
              "reads an empty checkpoint", "it is what save_checkpoint([]) writes; inspect shows it as empty"),
    # torch.save: checked by tests/test_torch_differential.py, against torch.load(weights_only=True).
    Deviation("torch.save", "a global outside torch's allow-list (omegaconf, argparse, a whole model, os.system)",
              "refuses the file ('Unsupported global')", "reads the tensors; the object is a placeholder, never "
              "imported or called, left out with a note", "the tensors are data and the user asked for them; the "
              "classes are code, and running them is what weights_only exists to prevent"),
    Deviation("torch.save", "complex(...) or bytearray(...) values", "builds them (bytearray(10**12) allocates 1 TB)",
              "placeholders, left out with a note", "neither is a tensor; building one runs a constructor on what "
              "the file claims"),
    Deviation("torch.save", "many tensors viewing one storage, beyond TORCH_OUTPUT_MAX_RATIO x the file",
              "shares the storage in memory", "refuses the file", "every format we write stores each tensor's own "
              "bytes: 1 000 views of 1 MiB would write 1 GB"),
    Deviation("torch.save", "nesting, a memo or an object count beyond the PICKLE_* limits",
              "reads it (a 300 000-deep tuple crashes it)", "refuses the file",
              "no checkpoint needs them; each is a way to make the reader's work or memory outgrow the file"),
    Deviation("torch.save", "a quantized, sparse, nested or meta tensor in the state dict", "builds it",
              "refuses the file, naming the tensor and its kind", "only dense tensors convert to the other formats"),
    # torch.save's zip container: checked by tests/test_torch_zip_differential.py, against torch.load(weights_only=True).
    Deviation("torch.save zip", "duplicate record names", "reads one of them (the first data/0, but the second "
              "data.pkl: miniz's binary search; names compared ignoring case)", "refuses the file",
              "two readers of one file would see different tensors; torch.save never writes duplicates"),
    Deviation("torch.save zip", "a local header that disagrees with the central directory (name or method)",
              "uses the central directory and ignores the local header", "refuses the file",
              "zip tools disagree on which to trust (Python's zipfile refuses a name mismatch)"),
    Deviation("torch.save zip", "records that overlap", "reads them (one storage's bytes serve another)",
              "refuses the file", "overlapping records are how zip bombs multiply their output"),
    Deviation("torch.save zip", "bytes between the central directory and the end record, or a directory shorter than "
              "the end record's count", "reads the records it finds", "refuses the file",
              "no zip writer produces them; they hide data from some readers and not others"),
    Deviation("torch.save zip", "a deflated record whose CRC-32 does not match", "reads it (miniz's CRC checks are "
              "off in torch)", "refuses the file", "the bytes are inflated anyway: the check is free"),
    Deviation("torch.save zip", "deflated records", "inflates them whole into memory, and torch.load(mmap=True) "
              "reads them raw (wrong tensors)", "inflates them on demand, in pieces, up to ZIP_MAX_INFLATED_BYTES",
              "torch.save never compresses, but re-zipped files exist"),
    Deviation("torch.save zip", "a stored record whose CRC-32 does not match", "reads it", "reads it too",
              "checking would read every byte once more (+0.5 s on 2 GB); the same bytes as torch"),
    Deviation("torch.save zip", "byteorder 'big' with an untyped storage of a multi-byte dtype (uint16/32/64)",
              "does not swap it (it swaps storages by their own dtype, uint8 for an untyped one)",
              "refuses the file", "the tensor torch returns is byte-swapped; neither reading is what was saved"),
)


def limit_table() -> str:
    """LIMITS as the README's Markdown table."""
    rows = ["| limit | value | bounds | why |", "| --- | --- | --- | --- |"]
    rows += [f"| `{limit.name}` | {limit.value:,} | {limit.bounds} | {limit.why} |" for limit in LIMITS]
    return "\n".join(rows)


def deviation_table() -> str:
    """DEVIATIONS as the README's Markdown table."""
    rows = ["| format | file | reference library | convmigrate | why |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| {d.format} | {d.case} | {d.library} | {d.convmigrate} | {d.why} |" for d in DEVIATIONS]
    return "\n".join(rows)


def readme_section() -> str:
    """The README's limits section body: both tables, as `python -m convmigrate.limits` prints them."""
    return f"{limit_table()}\n\nWhere convmigrate reads a file differently from the format's reference library, on purpose:\n\n{deviation_table()}\n"


if __name__ == "__main__":
    print(readme_section(), end="")
