"""Hostile MindSpore .ckpt files (issue 12: 5, 20 and more), protobuf built by hand.

A .ckpt is protobuf: every length, count and number is a varint that the file claims. Each case
breaks one of them: a varint's own length and its 64 bits, a length that lies about what
follows (at each nesting level), dims repeated and packed, numbers that overflow int64, fields
that the schema does not have or that appear twice, the CRC tail, and values that are not
tensors at all.
"""

from __future__ import annotations

from pathlib import Path

from tests.corpus import register
from tests.corpus.build import (
    CRC_MARK,
    ckpt_value,
    field,
    float32_bytes,
    varint,
    with_crc,
    written,
)

DAMAGED = r"; the file is damaged"


def tensor_proto(dims: list[int], tensor_type: bytes | str, content: bytes, *, packed: bool = False) -> bytes:
    tensor_type = tensor_type.encode() if isinstance(tensor_type, str) else tensor_type
    if packed:
        encoded_dims = field(1, b"".join(varint(d) for d in dims))
    else:
        encoded_dims = b"".join(varint(1 << 3) + varint(d) for d in dims)
    return encoded_dims + field(2, tensor_type) + field(3, content)


def value(tag: bytes | str, tensor: bytes, *extra: bytes) -> bytes:
    tag = tag.encode() if isinstance(tag, str) else tag
    return field(1, field(1, tag) + field(2, tensor) + b"".join(extra))


def good_value(tag: str = "w") -> bytes:
    return ckpt_value(tag, [2], "Float32", float32_bytes(2))


def ckpt(folder: Path, name: str, data: bytes) -> Path:
    return written(folder / name, data)


# --------------------------------------------------------------------------- dims (12.5, 12.20)


@register("12.5", "80 000 dims of 2^62 in a .ckpt (800 KB)", r"a tensor has more than 32 dims \(MAX_DIMS\) \(at byte \d+\)" + DAMAGED, max_seconds=10)
def many_dims(folder: Path) -> Path:
    return ckpt(folder, "dims.ckpt", value("w", tensor_proto([2**62] * 80_000, "Float32", b"\0" * 4)))


@register("12.5", "80 000 packed dims", r"a tensor has more than 32 dims \(MAX_DIMS\)", max_seconds=10)
def many_packed_dims(folder: Path) -> Path:
    return ckpt(folder, "packed.ckpt", value("w", tensor_proto([2**62] * 80_000, "Float32", b"\0" * 4, packed=True)))


@register("12.5", "dims spread over 40 000 repeated tensor fields", r"a tensor has more than 32 dims \(MAX_DIMS\)", max_seconds=10)
def dims_in_repeated_tensors(folder: Path) -> Path:
    """protobuf merges a repeated sub-message: its dims add up across the copies."""
    one = field(2, varint(1 << 3) + varint(1))
    return ckpt(folder, "merged.ckpt", field(1, field(1, b"w") + one * 40_000 + field(2, field(2, b"Float32") + field(3, b"\0" * 4))))


@register("12.20", ".ckpt: a dim of 2^63 with zero elements", r"tensor 'w' has a negative dimension in dims \[0, -9223372036854775808\]")
def dim_2_63(folder: Path) -> Path:
    return ckpt(folder, "dim63.ckpt", ckpt_value("w", [0, 2**63], "Float32", b""))


@register("12.20", "a dim of 2^64 - 1 (int64 -1): MindSpore would infer it", r"tensor 'w' has a negative dimension in dims \[-1\]")
def dim_minus_one(folder: Path) -> Path:
    return ckpt(folder, "minus1.ckpt", ckpt_value("w", [2**64 - 1], "Float32", float32_bytes(2)))


@register("12.20", ".ckpt: zero elements, dims whose product passes 2^63", r"tensor 'w': dims \[0, 4611686018427387904, 4\] of Float32 claim a size beyond 2\^63 - 1 bytes")
def dims_product(folder: Path) -> Path:
    return ckpt(folder, "product.ckpt", ckpt_value("w", [0, 2**62, 4], "Float32", b""))


@register("extra", ".ckpt dims needing petabytes", r"tensor 'w': dims \[1048576, 1048576, 256\] of Float32 would need 1125899906842624 bytes, more than the whole file")
def petabyte_dims(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    return ckpt(folder, "huge.ckpt", ckpt_value("w", [2**20, 2**20, 256], "Float32", bytes(16)))


@register("extra", ".ckpt content length disagrees with dims", r"tensor 'w': content is 8 bytes but dims \[3\] of Float32 need 12")
def content_length_mismatch(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    return ckpt(folder, "length.ckpt", ckpt_value("w", [3], "Float32", bytes(8)))


# --------------------------------------------------------------------------- varints and lengths


@register("extra", "a varint of 11 bytes", r"bad varint: longer than 10 bytes \(at byte \d+\)" + DAMAGED)
def varint_too_long(folder: Path) -> Path:
    return ckpt(folder, "varint.ckpt", good_value() + b"\x0a" + b"\xff" * 10 + b"\x01")


@register("extra", "a length varint whose 70 bits overflow 64", r"truncated: a field of a Checkpoint message needs \d+ bytes")
def varint_overflow(folder: Path) -> Path:
    return ckpt(folder, "overflow.ckpt", good_value() + b"\x0a" + b"\xff" * 9 + b"\x7f" + good_value())


@register("extra", "a value's length runs past the end of the file", r"truncated: a field of a Checkpoint message needs 1099511627776 bytes")
def value_length_lie(folder: Path) -> Path:
    return ckpt(folder, "lie.ckpt", good_value() + b"\x0a" + varint(1 << 40) + good_value()[2:])


@register("extra", "a tensor's length runs past its value", r"truncated: a field of a Value message needs \d+ bytes")
def tensor_length_lie(folder: Path) -> Path:
    inner = field(1, b"w") + b"\x12" + varint(1000) + tensor_proto([2], "Float32", float32_bytes(2))
    return ckpt(folder, "lie.ckpt", field(1, inner) + good_value("v"))


@register("extra", "a content length runs past its tensor", r"truncated: a field of a TensorProto message needs 1000 bytes")
def content_length_lie(folder: Path) -> Path:
    tensor = varint(1 << 3) + varint(2) + field(2, b"Float32") + b"\x1a" + varint(1000) + float32_bytes(2)
    return ckpt(folder, "lie.ckpt", value("w", tensor) + good_value("v"))


@register("extra", "a varint cut off by the end of its message", r"truncated: a number runs past the end of its message")
def varint_cut(folder: Path) -> Path:
    return ckpt(folder, "cut.ckpt", value("w", tensor_proto([2], "Float32", float32_bytes(2)) + b"\x08\xff"))


@register("extra", "truncated .ckpt", r"truncated: .*" + DAMAGED)
def truncated(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    data = good_value("a") + good_value("b")
    return ckpt(folder, "truncated.ckpt", data[:-5])


# --------------------------------------------------------------------------- fields


@register("extra", "bit-flipped .ckpt: tensor_type key gets wire type 3", r"field 2 with wire type 3 cannot belong to a TensorProto message .*" + DAMAGED)
def flipped(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    data = good_value()
    at = data.index(b"\x12\x07Float32")
    return ckpt(folder, "flipped.ckpt", data[:at] + b"\x13" + data[at + 1 :])


@register("extra", "an unknown TensorProto field (MindSpore would skip it)", r"field 4 with wire type 0 cannot belong to a TensorProto message")
def unknown_field(folder: Path) -> Path:
    return ckpt(folder, "unknown.ckpt", value("w", tensor_proto([2], "Float32", float32_bytes(2)) + b"\x20\x01"))


@register("extra", "a fixed64 field in a Value", r"field 5 with wire type 1 cannot belong to a Value message")
def fixed64_field(folder: Path) -> Path:
    return ckpt(folder, "fixed.ckpt", value("w", tensor_proto([2], "Float32", float32_bytes(2)), b"\x29" + b"\0" * 8))


@register("extra", "a group (wire type 3) at the top", r"field 1 with wire type 3 cannot belong to a Checkpoint message")
def group_field(folder: Path) -> Path:
    return ckpt(folder, "group.ckpt", good_value() + b"\x0b\x0c")


@register("extra", "field number 0", r"field 0 with wire type 0 cannot belong to a Value message")
def field_zero(folder: Path) -> Path:
    return ckpt(folder, "zero.ckpt", value("w", tensor_proto([2], "Float32", float32_bytes(2)), b"\x00\x00"))


@register("extra", "a value with no tensor (MindSpore loads an empty list)", r"value 'w' has no tensor_type or no tensor_content")
def no_tensor(folder: Path) -> Path:
    return ckpt(folder, "notensor.ckpt", good_value("a") + field(1, field(1, b"w")))


@register("extra", "a value with no tag", r"a value has no tag \(tensor name\)")
def no_tag(folder: Path) -> Path:
    return ckpt(folder, "notag.ckpt", good_value("a") + field(1, field(2, tensor_proto([2], "Float32", float32_bytes(2)))))


@register("extra", "a tensor without content", r"value 'w' has no tensor_type or no tensor_content")
def no_content(folder: Path) -> Path:
    return ckpt(folder, "nocontent.ckpt", value("w", varint(1 << 3) + varint(2) + field(2, b"Float32")))


@register("extra", "a MapParameter (maptensor)", r"holds a MapParameter \(maptensor\), which convmigrate cannot read")
def maptensor(folder: Path) -> Path:
    map_tensor = field(1, tensor_proto([2], "Int32", b"\0" * 8))
    return ckpt(folder, "map.ckpt", good_value("a") + field(1, field(1, b"m") + field(3, map_tensor)))


@register("extra", ".ckpt unknown tensor_type", r"tensor 'w' has tensor_type 'Int4', which convmigrate cannot read")
def unknown_tensor_type(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    return ckpt(folder, "int4.ckpt", ckpt_value("w", [2], "Int4", bytes(1)))


@register("extra", "a tensor_type with a NUL byte", r"tensor 'w' has tensor_type 'Float32\\x00', which convmigrate cannot read")
def tensor_type_nul(folder: Path) -> Path:
    return ckpt(folder, "nul.ckpt", value("w", tensor_proto([2], b"Float32\0", float32_bytes(2))))


@register("extra", ".ckpt tag not UTF-8", r"the tag \(tensor name\) is not valid UTF-8 \(at byte \d+\)" + DAMAGED)
def tag_not_utf8(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    return ckpt(folder, "tag.ckpt", ckpt_value(b"conv\xff\xfe.weight", [1], "Int8", b"\x01"))


@register("extra", "a tag that is a UTF-8-encoded lone surrogate", r"the tag \(tensor name\) is not valid UTF-8")
def tag_surrogate(folder: Path) -> Path:
    return ckpt(folder, "surrogate.ckpt", ckpt_value(b"w\xed\xa0\x80", [1], "Int8", b"\x01"))


@register("extra", ".ckpt same tag twice, not adjacent", r"tag 'a' appears again after other values .*must be adjacent")
def repeated_tag(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py."""
    one = lambda tag: ckpt_value(tag, [1], "Int8", b"\x01")  # noqa: E731
    return ckpt(folder, "repeated.ckpt", one("a") + one("b") + one("a"))


@register("extra", "the parts of a split tensor disagree on dims", r"the parts of split tensor 'w' disagree on dims or tensor_type")
def split_disagree(folder: Path) -> Path:
    return ckpt(folder, "split.ckpt", ckpt_value("w", [4], "Float32", float32_bytes(2)) + ckpt_value("w", [2, 2], "Float32", float32_bytes(2)))


@register("extra", "a str value that is not UTF-32", r"str value 's' is not UTF-32 text \(5 bytes\)")
def str_not_utf32(folder: Path) -> Path:
    return ckpt(folder, "str.ckpt", good_value() + ckpt_value("s", [0], "str", b"abcde"))


@register("extra", "a str value holding a surrogate code point", r"str value 's' is not UTF-32 text \(4 bytes\)")
def str_surrogate(folder: Path) -> Path:
    return ckpt(folder, "str.ckpt", good_value() + ckpt_value("s", [0], "str", (0xD800).to_bytes(4, "little")))


@register("extra", "a Checkpoint-level field other than value", r"field 2 with wire type 2 cannot belong to a Checkpoint message")
def checkpoint_field_2(folder: Path) -> Path:
    return ckpt(folder, "field2.ckpt", good_value() + field(2, b"x"))


# --------------------------------------------------------------------------- the CRC tail


@register("extra", "CRC tail does not match", r"the CRC does not match \(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\): the file is damaged")
def crc_mismatch(folder: Path) -> Path:
    """Migrated from tests/test_hardening.py: a bit of tensor content flipped after the CRC was taken."""
    data = bytearray(with_crc(good_value("a") + good_value("b")))
    data[len(data) - 20] ^= 1
    return ckpt(folder, "crc.ckpt", bytes(data))


@register("extra", "a tensor whose content ends like a CRC tail", r"the CRC does not match")
def crc_mark_in_content(folder: Path) -> Path:
    """MindSpore strips the last 17 bytes whenever they start with b"crc_num", then fails to parse."""
    content = b"\0" * 3 + CRC_MARK + b"\0" * 10  # 20 bytes: five float32
    return ckpt(folder, "mark.ckpt", ckpt_value("w", [5], "Float32", content))


@register("extra", "a valid CRC over a damaged protobuf", r"truncated: .*" + DAMAGED)
def crc_over_damage(folder: Path) -> Path:
    return ckpt(folder, "crcdamage.ckpt", with_crc((good_value("a") + good_value("b"))[:-3]))


@register("extra", "only a CRC tail that does not match", r"the CRC does not match")
def crc_only(folder: Path) -> Path:
    return ckpt(folder, "crconly.ckpt", CRC_MARK + b"\0" * 9 + b"\x01")


@register("extra", "a str value split over two values (MindSpore keeps a piece of it)", r"str value 's' is split over 2 values")
def str_split(folder: Path) -> Path:
    return ckpt(folder, "strsplit.ckpt", good_value() + ckpt_value("s", [0], "str", "ab".encode("utf-32-le")) + ckpt_value("s", [0], "str", b"c\0\0\0"))


# Walking 200 000 values takes seconds: this case runs through inspect only (the limit is the reader's).
@register("extra", "200 001 one-byte values (3 MB; 60x that in memory before the limit)", r"more than 200,000 values \(MAX_ENTRIES\)",
          max_seconds=60, commands=("inspect",))
def too_many_values(folder: Path) -> Path:
    one = lambda i: value(str(i), varint(1 << 3) + varint(1) + field(2, b"Int8") + field(3, b"\1"))  # noqa: E731
    return ckpt(folder, "many.ckpt", b"".join(one(i) for i in range(200_001)))
