"""Hostile safetensors files, sharded indexes and the JSON inside them (issue 12: 3, 5, 14, 20 and more).

Every file is built by hand (tests/corpus/build.py), not by the tool's writer: the 8-byte
header length, the JSON header, the data region. Each attack breaks one assumption that a
reader could make: the length prefix, the JSON (depth, numbers, keys, Unicode), each record's
fields, the offsets' tiling, the metadata, and for an index the shard names and the agreement
between the index and its shards.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.corpus import LAYERS_COMMANDS, RULES_COMMANDS, register
from tests.corpus.build import (
    float32_bytes,
    index_file,
    record,
    safetensors_file,
    written,
)

DEEP = 100_000  # issue 12.14: the nesting that gave "unexpected RecursionError"
GOOD = {"w": record("F32", [2], 0, 8)}


def st(folder: Path, name: str, header: dict | bytes, data: bytes = b"", **options: object) -> Path:
    return written(folder / name, safetensors_file(header, data, **options))


def deep_list(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


# --------------------------------------------------------------------------- 12.3 shard names


def sharded(folder: Path, shard_name: str, *, outside: bool = True) -> Path:
    """A model folder whose index places tensor "secret" in `shard_name`; beside it, outside the
    folder, a valid safetensors file holding "secret" (what a traversal would copy out)."""
    model = folder / "model"
    model.mkdir()
    if outside:
        (folder / "outside").mkdir()
        st(folder / "outside", "secret.safetensors", {"secret": record("F32", [2], 0, 8)}, float32_bytes(2))
    st(model, "a.safetensors", GOOD, float32_bytes(2))
    return written(model / "model.safetensors.index.json", index_file({"w": "a.safetensors", "secret": shard_name}))


NOT_PLAIN = r"shard .* is not a file name beside the index; an index may only name files in its own folder"


@register("12.3", "index names a shard ../outside/secret.safetensors", NOT_PLAIN)
def shard_dotdot(folder: Path) -> Path:
    return sharded(folder, "../outside/secret.safetensors")


@register("12.3", "index names a shard by its absolute path", NOT_PLAIN)
def shard_absolute(folder: Path) -> Path:
    return sharded(folder, str(folder / "outside" / "secret.safetensors"))


# The error must not echo the file's first 8 bytes (b"root:x:0" read as a header length).
@register("12.3", "index names /etc/passwd", r"^(?!.*(3475222254926655346|root:x)).*shard '/etc/passwd' is not a file name beside the index")
def shard_etc_passwd(folder: Path) -> Path:
    return written(folder / "model.safetensors.index.json", index_file({"x": "/etc/passwd"}))


@register("12.3", "index names a shard with a backslash path", NOT_PLAIN)
def shard_backslash(folder: Path) -> Path:
    return sharded(folder, "..\\outside\\secret.safetensors")


@register("12.3", "index names a shard with an empty name", NOT_PLAIN)
def shard_empty_name(folder: Path) -> Path:
    return sharded(folder, "", outside=False)


@register("12.3", "index names itself as a shard", NOT_PLAIN)
def shard_is_the_index(folder: Path) -> Path:
    return sharded(folder, "model.safetensors.index.json", outside=False)


@register("12.3", "index names another index as a shard", NOT_PLAIN)
def shard_is_another_index(folder: Path) -> Path:
    index = sharded(folder, "other.safetensors.index.json", outside=False)
    written(index.parent / "other.safetensors.index.json", index_file({"secret": "a.safetensors"}))
    return index


@register("12.3", "index names a shard with a NUL byte", NOT_PLAIN)
def shard_nul(folder: Path) -> Path:
    return sharded(folder, "a.safetensors\0.safetensors", outside=False)


def linked_shard(folder: Path, target: str | Path, *, outside: bool = False) -> Path:
    """`sharded` whose shard is link.safetensors, an in-folder symlink to `target`."""
    index = sharded(folder, "link.safetensors", outside=outside)
    (index.parent / "link.safetensors").symlink_to(target)
    return index


LEAVES = r"shard 'link\.safetensors' is a symlink to a file outside .*; copy the shards into one folder"


@register("12.3", "an in-folder symlink to a safetensors file outside the folder", LEAVES)
def shard_symlink_out(folder: Path) -> Path:
    return linked_shard(folder, folder / "outside" / "secret.safetensors", outside=True)


@register("12.3", "an in-folder symlink chain that ends outside the folder", LEAVES)
def shard_symlink_chain(folder: Path) -> Path:
    index = linked_shard(folder, "hop.safetensors", outside=True)
    (index.parent / "hop.safetensors").symlink_to("../outside/secret.safetensors")
    return index


@register("12.3", "an in-folder symlink to /dev/zero", LEAVES)
def shard_symlink_device(folder: Path) -> Path:
    return linked_shard(folder, "/dev/zero")


@register("12.3", "an in-folder symlink to a subfolder", r"shard 'link\.safetensors' is not a regular file")
def shard_symlink_folder(folder: Path) -> Path:
    index = linked_shard(folder, "sub")
    (index.parent / "sub").mkdir()
    return index


@register("12.3", "an in-folder symlink loop", r"shard 'link\.safetensors' listed in the index is missing")
def shard_symlink_loop(folder: Path) -> Path:
    return linked_shard(folder, "link.safetensors")


@register("12.3", "a shard that is a FIFO (would block a reader forever)", r"shard 'pipe\.safetensors' is not a regular file")
def shard_fifo(folder: Path) -> Path:
    index = sharded(folder, "pipe.safetensors", outside=False)
    os.mkfifo(index.parent / "pipe.safetensors")
    return index


# --------------------------------------------------------------------------- 12.3 and more: index vs shards


@register("extra", "index places a tensor in a shard that does not hold it", r"index places 'secret' in shard 'a\.safetensors', which does not hold it")
def index_lists_missing_tensor(folder: Path) -> Path:
    return sharded(folder, "a.safetensors", outside=False)


@register("extra", "a shard holds a tensor the index does not list", r"shard 'a\.safetensors' holds 'extra', which the index does not place there")
def shard_holds_unlisted(folder: Path) -> Path:
    st(folder, "a.safetensors", {"w": record("F32", [1], 0, 4), "extra": record("F32", [1], 4, 8)}, float32_bytes(2))
    return written(folder / "model.safetensors.index.json", index_file({"w": "a.safetensors"}))


@register("extra", "two shards hold the same tensor", r"shard 'b\.safetensors' holds 'w', which the index does not place there")
def tensor_in_two_shards(folder: Path) -> Path:
    st(folder, "a.safetensors", {"w": record("F32", [1], 0, 4)}, float32_bytes(1))
    st(folder, "b.safetensors", {"w": record("F32", [1], 0, 4), "v": record("F32", [1], 4, 8)}, float32_bytes(2))
    return written(folder / "model.safetensors.index.json", index_file({"w": "a.safetensors", "v": "b.safetensors"}))


@register("extra", "two shard names reach one file (an in-folder symlink)", r"shard 'a\.safetensors' holds 'v', which the index does not place there")
def two_names_one_file(folder: Path) -> Path:
    st(folder, "a.safetensors", {"w": record("F32", [1], 0, 4), "v": record("F32", [1], 4, 8)}, float32_bytes(2))
    (folder / "b.safetensors").symlink_to("a.safetensors")
    return written(folder / "model.safetensors.index.json", index_file({"w": "a.safetensors", "v": "b.safetensors"}))


@register("7", "sharded index names a missing shard", r"shard 'model-00002-of-00002\.safetensors' listed in the index is missing")
def missing_shard(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    st(folder, "model-00001-of-00002.safetensors", GOOD, float32_bytes(2))
    weight_map = {"w": "model-00001-of-00002.safetensors", "head.weight": "model-00002-of-00002.safetensors"}
    return written(folder / "model.safetensors.index.json", index_file(weight_map))


@register("extra", "a damaged shard: the error names the shard", r"damaged safetensors file: header length \d+ runs past the end",
          names=lambda index: index.parent / "a.safetensors")
def damaged_shard(folder: Path) -> Path:
    written(folder / "a.safetensors", safetensors_file(GOOD, float32_bytes(2), length=1 << 40))
    return written(folder / "model.safetensors.index.json", index_file({"w": "a.safetensors"}))


@register("extra", "a .ckpt named as a shard", r"damaged safetensors file", names=lambda index: index.parent / "a.safetensors")
def ckpt_as_shard(folder: Path) -> Path:
    from tests.corpus.build import ckpt_value

    written(folder / "a.safetensors", ckpt_value("w", [2], "Float32", float32_bytes(2)))
    return written(folder / "model.safetensors.index.json", index_file({"w": "a.safetensors"}))


NOT_INDEX = r"is not a sharded safetensors index \('weight_map' of name -> shard file\)"


@register("extra", "weight_map values that are not strings", NOT_INDEX)
def weight_map_not_strings(folder: Path) -> Path:
    return written(folder / "model.safetensors.index.json", index_file({"w": 1, "v": None, "u": ["a.safetensors"]}))


@register("extra", "weight_map is a list", NOT_INDEX)
def weight_map_list(folder: Path) -> Path:
    return written(folder / "model.safetensors.index.json", json.dumps({"weight_map": [["w", "a.safetensors"]]}).encode())


@register("7", "a JSON that is not an index", NOT_INDEX)
def json_not_index(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    return written(folder / "config.index.json", b'{"architectures": ["Wav2Vec2Model"]}')


@register("extra", "index metadata is a list", r"index 'metadata' is not an object")
def index_metadata_list(folder: Path) -> Path:
    return written(folder / "model.safetensors.index.json", index_file({}, metadata=["x"]))


@register("extra", "a tensor named twice in the weight_map", r"not a readable JSON index \(the key 'w' appears twice in one object\)")
def index_duplicate_key(folder: Path) -> Path:
    text = b'{"weight_map": {"w": "a.safetensors", "w": "b.safetensors"}}'
    return written(folder / "model.safetensors.index.json", text)


@register("extra", "an index that is not UTF-8", r"not a readable JSON index \(not UTF-8")
def index_not_utf8(folder: Path) -> Path:
    return written(folder / "model.safetensors.index.json", b'{"weight_map": {"\xff\xfe": "a.safetensors"}}')


@register("extra", "an index over 16 MiB (a padded weight map)", r"not a readable JSON index \(16,777,217 bytes exceed .*SAFETENSORS_INDEX_MAX_BYTES")
def index_too_big(folder: Path) -> Path:
    text = b'{"weight_map": {}}'
    return written(folder / "model.safetensors.index.json", text + b" " * (16 * 1024 * 1024 + 1 - len(text)))


@register("extra", "an index naming 513 shards", r"names 513 shard files, more than the limit of 512 \(SAFETENSORS_MAX_SHARDS\)")
def index_too_many_shards(folder: Path) -> Path:
    return written(folder / "model.safetensors.index.json", index_file({f"t{i}": f"s{i}.safetensors" for i in range(513)}))


@register("12.14", "100 000-deep JSON in an index", r"not a readable JSON index \(nested 100001 levels deep, more than the limit of 127")
def index_deep(folder: Path) -> Path:
    return written(folder / "model.safetensors.index.json", ('{"weight_map": {}, "metadata": ' + deep_list() + "}").encode())


# --------------------------------------------------------------------------- the length prefix


@register("extra", "header length runs past the end of the file", r"damaged safetensors file: header length 1099511627776 runs past the end of the \d+-byte file")
def header_length_past_end(folder: Path) -> Path:
    return st(folder, "long.safetensors", GOOD, float32_bytes(2), length=1 << 40)


@register("extra", "header length of 100 000 001 bytes in a file that long", r"header length 100000001 exceeds the 100,000,000-byte limit \(SAFETENSORS_MAX_HEADER\)")
def header_over_limit(folder: Path) -> Path:
    path = written(folder / "sparse.safetensors", safetensors_file(b"{\"", length=100_000_001))
    os.truncate(path, 8 + 100_000_001)  # sparse: 100 MB claimed, nothing stored
    return path


@register("extra", "truncated .safetensors header", r"damaged safetensors file: header length \d+ runs past the end of the 40-byte file")
def truncated_header(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    return written(folder / "truncated_header.safetensors", safetensors_file(GOOD, float32_bytes(2))[:40])


@register("extra", "truncated .safetensors data", r"damaged safetensors file: tensor data needs 8 bytes but the file holds 2 .*truncated")
def truncated_data(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    return st(folder, "truncated.safetensors", GOOD, float32_bytes(2)[:2])


@register("extra", "bit-flipped .safetensors length", r"is not a checkpoint convmigrate knows|damaged safetensors file")
def flipped_length(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py: bit 6 of the length's third byte."""
    data = bytearray(safetensors_file(GOOD, float32_bytes(2)))
    data[2] ^= 0x40
    return written(folder / "flipped_length.safetensors", bytes(data))


@register("extra", "bit-flipped .safetensors header: dtype -> etype", r"tensor 'w': record must have dtype, shape and data_offsets")
def flipped_key(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    data = safetensors_file(GOOD, float32_bytes(2)).replace(b'"dtype"', b'"etype"')
    return written(folder / "flipped.safetensors", data)


# --------------------------------------------------------------------------- the JSON itself (12.5, 12.14)


@register("12.14", "100 000-deep JSON in a safetensors header", r"damaged safetensors file: header: nested 100002 levels deep, more than the limit of 127 \(JSON_MAX_DEPTH\)")
def header_deep(folder: Path) -> Path:
    return st(folder, "deep.safetensors", ('{"w": {"dtype": "F32", "shape": ' + deep_list() + ', "data_offsets": [0, 0]}}').encode())


@register("12.14", "100 000-deep JSON in an ignored extra field", r"header: nested 100002 levels deep")
def header_deep_extra_field(folder: Path) -> Path:
    return st(folder, "deep.safetensors", ('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": ' + deep_list() + "}}").encode(), float32_bytes(2))


@register("12.14", "100 000-deep JSON in a metadata value", r"metadata 'convmigrate\.value\.x' is not the JSON of a value \(nested 100000 levels deep")
def metadata_deep(folder: Path) -> Path:
    header = {"__metadata__": {"convmigrate.value.x": deep_list()}, **GOOD}
    return st(folder, "deep_meta.safetensors", header, float32_bytes(2))


@register("12.14", "brackets inside strings do not count as nesting, unterminated string", r"header: not valid JSON")
def header_unterminated_string(folder: Path) -> Path:
    return st(folder, "unterminated.safetensors", b'{"w": "' + b"[" * DEEP + b'\\"' * 1000)


@register("12.5", "500 dims of 10^4000 in a safetensors shape (2 MB)", r"header: the number 10000000000000000000\.\.\. is beyond the float range", max_seconds=10)
def huge_dims(folder: Path) -> Path:
    big = "1" + "0" * 4000
    text = ('{"w": {"dtype": "F32", "shape": [' + ", ".join([big] * 500) + '], "data_offsets": [0, 4]}}').encode()
    return st(folder, "huge_dims.safetensors", text, b"\0" * 4)


@register("12.5", "a 4000-digit data offset", r"header: the number 10000000000000000000\.\.\. is beyond the float range")
def huge_offset(folder: Path) -> Path:
    return st(folder, "huge_offset.safetensors", ('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1' + "0" * 4000 + "]}}").encode())


@register("12.5", "a million dims in a safetensors shape", r"tensor 'w': shape claims 1000000 dims, more than 32 \(MAX_DIMS\)", max_seconds=10)
def million_dims(folder: Path) -> Path:
    return st(folder, "dims.safetensors", {"w": record("F32", [1] * 1_000_000, 0, 4)}, b"\0" * 4)


@register("12.5", "33 dims", r"shape claims 33 dims, more than 32 \(MAX_DIMS\)")
def dims_33(folder: Path) -> Path:
    return st(folder, "dims33.safetensors", {"w": record("F32", [1] * 33, 0, 4)}, b"\0" * 4)


@register("12.20", "a dim of 2^63 with zero elements", r"shape \[0, 9223372036854775808\] claims a size beyond 2\^63 - 1 bytes, zero dims left out \(MAX_DIM_PRODUCT\)")
def dim_2_63(folder: Path) -> Path:
    return st(folder, "dim63.safetensors", {"w": record("F32", [0, 2**63], 0, 0)})


@register("12.20", "a dim of 2^64 + 5 with zero elements", r"claims a size beyond 2\^63 - 1 bytes")
def dim_2_64(folder: Path) -> Path:
    return st(folder, "dim64.safetensors", {"w": record("F32", [0, 2**64 + 5], 0, 0)})


@register("12.20", "zero elements, dims whose product passes 2^63", r"shape \[0, 1099511627776, 1099511627776\] claims a size beyond 2\^63 - 1 bytes")
def dims_product(folder: Path) -> Path:
    return st(folder, "product.safetensors", {"w": record("F32", [0, 2**40, 2**40], 0, 0)})


@register("extra", "a tensor named twice in the header", r"header: the key 'w' appears twice in one object")
def duplicate_tensor(folder: Path) -> Path:
    text = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
    return st(folder, "dup.safetensors", text, float32_bytes(2))


@register("extra", "a record field twice", r"header: the key 'shape' appears twice in one object")
def duplicate_field(folder: Path) -> Path:
    text = b'{"w": {"dtype": "F32", "shape": [2], "shape": [1], "data_offsets": [0, 8]}}'
    return st(folder, "dupfield.safetensors", text, float32_bytes(2))


@register("extra", "__metadata__ twice", r"header: the key '__metadata__' appears twice in one object")
def duplicate_metadata(folder: Path) -> Path:
    text = b'{"__metadata__": {"a": "x"}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"format": "ms"}}'
    return st(folder, "dupmeta.safetensors", text, float32_bytes(2))


@register("extra", "a header that is not UTF-8", r"header: not UTF-8")
def header_not_utf8(folder: Path) -> Path:
    return st(folder, "latin1.safetensors", b'{"\xe9": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', float32_bytes(2))


@register("extra", "a tensor name that is a lone surrogate escape", r"header: a string holds a lone UTF-16 surrogate escape")
def header_surrogate(folder: Path) -> Path:
    return st(folder, "surrogate.safetensors", b'{"\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', float32_bytes(2))


@register("extra", "NaN in a shape", r"header: NaN is not a JSON number")
def header_nan(folder: Path) -> Path:
    return st(folder, "nan.safetensors", b'{"w": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 8]}}', float32_bytes(2))


@register("extra", "NUL padding after the header JSON", r"header: not valid JSON \(Extra data")
def header_nul_padding(folder: Path) -> Path:
    return st(folder, "nul.safetensors", json.dumps(GOOD).encode() + b"\0\0\0", float32_bytes(2))


@register("extra", "a header that is a JSON array", r"is not a checkpoint convmigrate knows|header is not a JSON object")
def header_array(folder: Path) -> Path:
    return st(folder, "array.safetensors", b'[{"w": 1}]')


# --------------------------------------------------------------------------- records


@register("extra", "dtype is a number", r"tensor 'w' has dtype 5, which convmigrate does not carry")
def dtype_number(folder: Path) -> Path:
    return st(folder, "dtype.safetensors", {"w": record(5, [2], 0, 8)}, float32_bytes(2))  # type: ignore[arg-type]


@register("extra", "dtype in lower case", r"tensor 'w' has dtype 'f32', which convmigrate does not carry")
def dtype_lower(folder: Path) -> Path:
    return st(folder, "dtype.safetensors", {"w": record("f32", [2], 0, 8)}, float32_bytes(2))


@register("extra", "dtype C64 (the library reads it; convmigrate carries no complex type)", r"tensor 'w' has dtype 'C64', which convmigrate does not carry")
def dtype_complex(folder: Path) -> Path:
    return st(folder, "complex.safetensors", {"w": record("C64", [1], 0, 8)}, float32_bytes(2))


@register("extra", "dtype F8_E4M3", r"tensor 'w' has dtype 'F8_E4M3', which convmigrate does not carry")
def dtype_float8(folder: Path) -> Path:
    return st(folder, "fp8.safetensors", {"w": record("F8_E4M3", [8], 0, 8)}, float32_bytes(2))


@register("extra", "shape of booleans", r"shape is not a list of non-negative integers")
def shape_bools(folder: Path) -> Path:
    return st(folder, "bools.safetensors", {"w": record("F32", [True, 2], 0, 8)}, float32_bytes(2))


@register("extra", "shape of floats", r"shape is not a list of non-negative integers")
def shape_floats(folder: Path) -> Path:
    return st(folder, "floats.safetensors", {"w": record("F32", [2.0], 0, 8)}, float32_bytes(2))


@register("extra", "shape is an object", r"shape is not a list of non-negative integers")
def shape_object(folder: Path) -> Path:
    return st(folder, "shape.safetensors", {"w": record("F32", {"0": 2}, 0, 8)}, float32_bytes(2))  # type: ignore[arg-type]


@register("extra", "a negative dim", r"shape is not a list of non-negative integers")
def shape_negative(folder: Path) -> Path:
    return st(folder, "neg.safetensors", {"w": record("F32", [-2], 0, 8)}, float32_bytes(2))


@register("extra", "a record that is a string", r"tensor 'w': record must have dtype, shape and data_offsets")
def record_string(folder: Path) -> Path:
    return st(folder, "rec.safetensors", {"w": "F32 [2] 0 8"}, float32_bytes(2))


@register("extra", "three data offsets", r"data_offsets \[0, 8, 8\] is not \[begin, end\]")
def offsets_three(folder: Path) -> Path:
    return st(folder, "off.safetensors", {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 8]}}, float32_bytes(2))


@register("extra", "negative data offsets", r"data_offsets \[-8, 0\] is not \[begin, end\]")
def offsets_negative(folder: Path) -> Path:
    return st(folder, "off.safetensors", {"w": record("F32", [2], -8, 0)}, float32_bytes(2))


@register("extra", "data offsets end before they begin", r"data_offsets \[8, 0\] hold -8 bytes, F32 \[2\] needs 8")
def offsets_reversed(folder: Path) -> Path:
    return st(folder, "off.safetensors", {"w": record("F32", [2], 8, 0)}, float32_bytes(2))


@register("extra", "data offsets beyond the file", r"tensor 'w' at data bytes \[1099511627776, 1099511627784\) leaves a gap at data byte 0")
def offsets_beyond(folder: Path) -> Path:
    return st(folder, "off.safetensors", {"w": record("F32", [2], 1 << 40, (1 << 40) + 8)}, float32_bytes(2))


@register("extra", "two tensors overlapping", r"at data bytes \[4, 12\) overlaps the previous tensor")
def offsets_overlap(folder: Path) -> Path:
    return st(folder, "overlap.safetensors", {"a": record("F32", [2], 0, 8), "b": record("F32", [2], 4, 12)}, float32_bytes(3))


@register("extra", "two tensors on the same bytes", r"at data bytes \[0, 8\) overlaps the previous tensor")
def offsets_aliased(folder: Path) -> Path:
    return st(folder, "alias.safetensors", {"a": record("F32", [2], 0, 8), "b": record("F32", [2], 0, 8)}, float32_bytes(2))


@register("extra", "a gap between tensors", r"leaves a gap at data byte 8")
def offsets_gap(folder: Path) -> Path:
    return st(folder, "gap.safetensors", {"a": record("F32", [2], 0, 8), "b": record("F32", [1], 12, 16)}, float32_bytes(4))


@register("extra", "bytes after the last tensor", r"4 bytes after the last tensor belong to no tensor")
def offsets_trailing(folder: Path) -> Path:
    return st(folder, "trail.safetensors", GOOD, float32_bytes(3))


@register("extra", "an empty tensor placed past the data", r"tensor 'z' at data bytes \[100, 100\) leaves a gap at data byte 8")
def offsets_empty_far(folder: Path) -> Path:
    return st(folder, "far.safetensors", {**GOOD, "z": record("F32", [0], 100, 100)}, float32_bytes(2))


# --------------------------------------------------------------------------- metadata


@register("extra", "a metadata value that is a number", r"__metadata__ must be an object of string values")
def metadata_number(folder: Path) -> Path:
    return st(folder, "meta.safetensors", {"__metadata__": {"epoch": 3}, **GOOD}, float32_bytes(2))


@register("extra", "__metadata__ is a list", r"__metadata__ must be an object of string values")
def metadata_list(folder: Path) -> Path:
    return st(folder, "meta.safetensors", {"__metadata__": ["format", "pt"], **GOOD}, float32_bytes(2))


@register("extra", "a carried value that is a list", r"metadata 'convmigrate\.value\.x' holds list, not a str, int, float or bool")
def metadata_value_list(folder: Path) -> Path:
    return st(folder, "meta.safetensors", {"__metadata__": {"convmigrate.value.x": "[1, 2]"}, **GOOD}, float32_bytes(2))


@register("extra", "a carried value with a 5000-digit number", r"metadata 'convmigrate\.value\.x' is not the JSON of a value \(the number 99999999999999999999\.\.\. is beyond the float range")
def metadata_value_huge_number(folder: Path) -> Path:
    return st(folder, "meta.safetensors", {"__metadata__": {"convmigrate.value.x": "9" * 5000}, **GOOD}, float32_bytes(2))


# --------------------------------------------------------------------------- --layers JSON and --rules TOML (12.14)


@register("12.14", "100 000-deep --layers JSON", r"not a layers JSON \(nested 100001 levels deep, more than the limit of 127", commands=LAYERS_COMMANDS)
def layers_deep(folder: Path) -> Path:
    return written(folder / "model.layers.json", ('{"layers": ' + deep_list() + "}").encode())


@register("12.14", "a --layers JSON with a 10 000-digit number", r"not a layers JSON \(the number 99999999999999999999\.\.\. is beyond the float range", commands=LAYERS_COMMANDS)
def layers_huge_number(folder: Path) -> Path:
    return written(folder / "model.layers.json", ('{"layers": [{"kind": "Conv1d", "torch": {"in_channels": ' + "9" * 10_000 + "}}]}").encode())


@register("12.14", "100 000-deep --rules TOML", r"not a rules file \(nested 100000 levels deep, more than the limit of 127", commands=RULES_COMMANDS)
def rules_deep(folder: Path) -> Path:
    return written(folder / "rules.toml", ("x = " + deep_list() + "\n").encode())


@register("12.14", "100 000-deep --rules TOML inline tables", r"not a rules file \(nested 100000 levels deep", commands=RULES_COMMANDS)
def rules_deep_tables(folder: Path) -> Path:
    return written(folder / "rules.toml", ("x = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n").encode())


@register("12.14", "a --rules TOML with a 100 000-digit integer", r"not a rules file \(a number of 100000 digits", commands=RULES_COMMANDS)
def rules_huge_int(folder: Path) -> Path:
    return written(folder / "rules.toml", ("x = " + "9" * 100_000 + "\n").encode())


@register("12.14", "a --layers file that is a FIFO", r"is not a regular file|no such layers JSON file", commands=LAYERS_COMMANDS)
def layers_fifo(folder: Path) -> Path:
    os.mkfifo(folder / "model.layers.json")
    return folder / "model.layers.json"


# Parsing 13 MB of JSON takes a second or more: the reader's limits run through inspect only.
@register("extra", "a header of 200 001 tensors", r"header lists 200,001 tensors, more than the limit of 200,000 \(MAX_ENTRIES\)",
          max_seconds=60, commands=("inspect",))
def too_many_tensors(folder: Path) -> Path:
    records = ", ".join(f'"{i}": {{"dtype": "U8", "shape": [], "data_offsets": [{i}, {i + 1}]}}' for i in range(200_001))
    return st(folder, "many.safetensors", ("{" + records + "}").encode(), bytes(200_001))


@register("extra", "a header of 2 000 001 items (a shape of zeros)", r"header: 2,000,00\d items, more than the limit of 2,000,000 \(JSON_MAX_ITEMS\)")
def too_many_items(folder: Path) -> Path:
    return st(folder, "items.safetensors", b'{"w": {"dtype": "U8", "shape": [' + b"0," * 2_000_001 + b'0], "data_offsets": [0, 0]}}')


@register("extra", "an index of 200 001 tensors", r"lists 200,001 tensors, more than the limit of 200,000 \(MAX_ENTRIES\)",
          max_seconds=60, commands=("inspect",))
def index_too_many_tensors(folder: Path) -> Path:
    return written(folder / "model.safetensors.index.json", index_file({str(i): "a.safetensors" for i in range(200_001)}))
