"""Hostile torch zips (issue 12, cases 1, 13 and 15, and the zip specification read with an attacker's eye).

Each case starts from a small checkpoint that convmigrate's own writer lays out byte for byte as
torch.save does (no torch needed to build the corpus), re-packs it with the hand-written zip
writer of `zipbuild`, and breaks one thing. Cases whose fault lies in tensor bytes (not in the
directory) are only found when the bytes are read: plain `inspect`, which lists names and shapes
without reading them, leaves those out (`READS_BYTES`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from convmigrate.entries import TensorEntry
from convmigrate.formats import write_checkpoint
from convmigrate.vocab import Format
from tests.corpus import CHECKPOINT_COMMANDS, register
from tests.corpus.zipbuild import (
    DEFLATED,
    Member,
    build_zip,
    record_index,
    torch_records,
    with_record,
    zip64_extra,
)

# The commands that read tensor bytes: not plain `inspect` (names and shapes only), nor a
# --reference (its shapes only).
READS_BYTES = tuple(c for c in CHECKPOINT_COMMANDS if c != "inspect" and "--reference" not in c)


def base_records(folder: Path, dtype: str = "float32") -> list[Member]:
    """The records of the corpus's small model (data/0: enc.conv.weight (8, 4, 3), data/1: its bias),
    so that `verify` against the trusted files pairs and reads every tensor."""
    rng = np.random.default_rng(1)
    entries = [
        TensorEntry.from_array("enc.conv.weight", rng.standard_normal((8, 4, 3)).astype(dtype)),
        TensorEntry.from_array("enc.conv.bias", rng.standard_normal(8).astype(dtype)),
    ]
    path = folder / "base.pt"
    write_checkpoint(path, entries, Format.TORCH, durable=False)
    records = torch_records(path)
    path.unlink()
    return records


def saved(folder: Path, data: bytes, name: str = "model.pt") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def deflated_zeros(mebibytes: int) -> bytes:
    """A raw deflate stream of `mebibytes` MiB of zeros (~1000:1), built without compressing them all.

    One MiB of zeros is compressed and flushed with Z_FULL_FLUSH (byte-aligned, no reference to
    what came before), so the same bytes repeated are a valid stream; b"\\x03\\x00" ends it."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + b"\x03\x00"


# --------------------------------------------------------------------------- case 1: zip bombs


@register("12.1", "zip bomb: a deflated data.pkl that declares 300 MiB", r"record 'archive/data\.pkl' claims 314,572,800 bytes, more than TORCH_MAX_PICKLE_BYTES")
def pickle_bomb(folder: Path) -> Path:
    bomb = deflated_zeros(300)  # ~300 KiB on disk
    return saved(folder, build_zip(with_record(base_records(folder), "data.pkl", method=DEFLATED, data=b"", payload=bomb,
                                               size=300 << 20, crc=0)))


@register("12.1", "zip bomb: a deflated data.pkl that declares 80 bytes and inflates to 300 MiB",
          r"record 'archive/data\.pkl' inflates to more than the 80 bytes it declares")
def pickle_bomb_with_a_small_claim(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data.pkl", method=DEFLATED, payload=deflated_zeros(300),
                                               size=80, crc=0)))


@register("12.1", "zip bomb: deflated tensor records that declare 2 GiB together",
          r"deflated records would inflate to 2,147,483,848 bytes, more than ZIP_MAX_INFLATED_BYTES")
def tensor_record_bomb(folder: Path) -> Path:
    records = with_record(base_records(folder), "data/0", method=DEFLATED, size=1 << 30, crc=0)
    return saved(folder, build_zip(with_record(records, "data/1", method=DEFLATED, size=(1 << 30) + 200, crc=0)))


@register("12.1", "zip bomb: a deflated tensor record that inflates past its size",
          r"record 'archive/data/0' inflates to more than the 384 bytes it declares", commands=READS_BYTES)
def tensor_record_overflow(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", method=DEFLATED, payload=deflated_zeros(64), crc=0)))


@register("12.1", "zip bomb: overlapping records (data/0 claims the bytes of the records after it)",
          r"records 'archive/data/0' and 'archive/data/1' overlap")
def overlapping_bomb(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", size=400, compressed_size=400)))


# --------------------------------------------------------------------------- case 13: the end records


@register("12.13", "the end record points past its central directory", r"end record puts the central directory at bytes \[")
def directory_past_the_end(folder: Path) -> Path:
    return saved(folder, build_zip(base_records(folder), directory_offset=1 << 20))


@register("12.13", "data before the archive (the end record's offsets miss by 64 bytes)", r"end record puts the central directory")
def data_before_the_archive(folder: Path) -> Path:
    return saved(folder, build_zip(base_records(folder), prefix=b"PK\x03\x04" + b"J" * 60))


@register("12.13", "the end record counts more records than its directory holds", r"central directory ends inside record 9 of 9")
def too_many_records_counted(folder: Path) -> Path:
    records = base_records(folder)
    return saved(folder, build_zip(records, count=len(records) + 1))


@register("12.13", "the directory holds more than the end record counts", r"holds \d+ bytes after the 7 records")
def records_not_counted(folder: Path) -> Path:
    records = base_records(folder)
    return saved(folder, build_zip(records, count=len(records) - 1))


@register("12.13", "a zip64 locator pointing nowhere", r"no zip64 end record at byte|no zip64 end record fits")
def zip64_locator_nowhere(folder: Path) -> Path:
    data = bytearray(build_zip(base_records(folder), zip64=True))
    locator = len(data) - 22 - 20
    struct.pack_into("<Q", data, locator + 8, 12)  # the zip64 end record's offset
    return saved(folder, bytes(data))


@register("12.13", "zip64 and classic end records that disagree", r"end record and the zip64 end record disagree on the records")
def zip64_disagrees(folder: Path) -> Path:
    data = bytearray(build_zip(base_records(folder), zip64=True))
    struct.pack_into("<HH", data, len(data) - 22 + 8, 3, 3)  # classic counts 3, zip64 says 8
    return saved(folder, bytes(data))


@register("12.13", "a truncated archive (no end record)", r"no zip end record at its end \(truncated")
def truncated_archive(folder: Path) -> Path:
    return saved(folder, build_zip(base_records(folder))[:-200])


@register("12.13", "a second end record hidden in the comment", r"2 zip end records")
def two_end_records(folder: Path) -> Path:
    records = base_records(folder)
    fake = build_zip([Member("x/y", b"")])  # a whole tiny archive, ending in its own end record
    data = build_zip(records, comment=fake)
    return saved(folder, data)


@register("12.13", "bytes between the central directory and the end record", r"end record puts the central directory")
def junk_after_the_directory(folder: Path) -> Path:
    return saved(folder, build_zip(base_records(folder), after_directory=b"hidden"))


@register("12.13", "an archive that spans disks", r"spans several disks|spans \d+ disks")
def spanned(folder: Path) -> Path:
    data = bytearray(build_zip(base_records(folder)))
    struct.pack_into("<H", data, len(data) - 22 + 4, 1)  # disk number 1
    return saved(folder, bytes(data))


@register("12.13", "a directory that claims a billion records", r"claims 1,000,000,000 records|cannot fit")
def a_billion_records(folder: Path) -> Path:
    return saved(folder, build_zip(base_records(folder), zip64=True, count=10**9))


# --------------------------------------------------------------------------- case 15: silent wrong tensors


@register("12.15", "byteorder 'big' over an untyped storage of uint16", r"untyped storage of a big-endian file")
def big_endian_untyped(folder: Path) -> Path:
    records = base_records(folder, "uint16")  # torch (and our writer) keep uint16 in an UntypedStorage
    return saved(folder, build_zip(with_record(records, "byteorder", data=b"big")))


@register("12.15", "byteorder 'middle'", r"byteorder record says 'middle'")
def unknown_byte_order(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "byteorder", data=b"middle")))


@register("12.15", "two data/0 records (torch reads the first, Python's zipfile the last)", r"two records are named 'archive/data/0'")
def duplicate_records(folder: Path) -> Path:
    records = base_records(folder)
    index = record_index(records, "data/0")
    return saved(folder, build_zip([*records[: index + 1], replace(records[index], data=bytes(384)), *records[index + 1 :]]))


@register("12.15", "data/0 and DATA/0 (miniz finds names ignoring case)", r"two records are named 'archive/data/0' and 'archive/DATA/0'")
def duplicate_ignoring_case(folder: Path) -> Path:
    return saved(folder, build_zip([*base_records(folder), Member("archive/DATA/0", bytes(384), align=64)]))


@register("12.15", "two data.pkl records", r"two records are named 'archive/data\.pkl'")
def duplicate_pickles(folder: Path) -> Path:
    records = base_records(folder)
    return saved(folder, build_zip([records[0], *records]))


@register("12.15", "a deflated tensor record whose CRC-32 is wrong", r"record 'archive/data/0': its CRC-32 does not match", commands=READS_BYTES)
def deflated_bad_crc(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", method=DEFLATED, crc=0x12345678)))


@register("12.15", "a tensor record shorter than its storage", r"record .?archive/data/0.? holds 32 bytes, (its storage needs|the pickle claims) 384")
def record_shorter_than_storage(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", data=bytes(32))))


# --------------------------------------------------------------------------- every other field


@register("extra", "local header names another record", r"local header names another record")
def local_name_differs(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", local_name="archive/data/1")))


@register("extra", "local header says deflated, the directory says stored", r"local header disagrees with the central directory")
def local_method_differs(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", local_method=DEFLATED)))


@register("extra", "a record whose data runs into the central directory", r"run into the central directory")
def data_into_the_directory(folder: Path) -> Path:
    records = base_records(folder)
    return saved(folder, build_zip(with_record(records, "version", compressed_size=4000, size=4000)))


@register("extra", "a local header offset past the data", r"claims a local header at byte 4,294,967,294")
def header_past_the_data(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/1", offset=0xFFFFFFFE)))


@register("extra", "a local header offset that lands on no header", r"no local header at byte 1")
def header_nowhere(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/1", offset=1)))


@register("extra", "an encrypted record", r"record 'archive/data/0' is encrypted")
def encrypted(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", flags=0x0801)))


@register("extra", "a record compressed with bzip2", r"compressed with bzip2; torch reads only stored and deflated")
def bzip2_record(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", method=12, payload=bytes(40))))


@register("extra", "a stored record whose two sizes differ", r"stored record 'archive/data/0' claims 32 bytes stored but 384")
def stored_sizes_differ(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", compressed_size=32)))


@register("extra", "a size that says 'see zip64' without a zip64 extra field", r"no zip64 extra field")
def zip64_field_missing(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "data/0", offset=0xFFFFFFFF)))


@register("extra", "a zip64 extra field too short for what it must hold", r"zip64 extra field holds 8 bytes, 16 are needed")
def zip64_field_short(folder: Path) -> Path:
    records = with_record(base_records(folder), "data/0", size=0xFFFFFFFF, compressed_size=0xFFFFFFFF,
                          central_extra=zip64_extra(96))
    return saved(folder, build_zip(records))


@register("extra", "an extra field whose length runs past its end", r"extra field runs past its end")
def extra_field_overrun(folder: Path) -> Path:
    bad = struct.pack("<HH", 0x5455, 200) + b"x" * 4
    records = with_record(base_records(folder), "data/0", offset=0xFFFFFFFF, central_extra=bad)
    return saved(folder, build_zip(records))


@register("extra", "no version record (torch.load refuses it too)", r"has no 'version' record")
def no_version(folder: Path) -> Path:
    return saved(folder, build_zip([m for m in base_records(folder) if not m.name.endswith("/version")]))


@register("extra", "archive version 99 (torch reads 1 to 10)", r"version record says '99\\n'")
def future_version(folder: Path) -> Path:
    return saved(folder, build_zip(with_record(base_records(folder), "/version", data=b"99\n")))


@register("extra", "a record outside the archive's folder", r"record 'elsewhere/data/1' is outside the folder 'archive'")
def record_outside_the_folder(folder: Path) -> Path:
    records = base_records(folder)
    index = record_index(records, "data/1")
    records[index] = replace(records[index], name="elsewhere/data/1")
    return saved(folder, build_zip(records))


@register("extra", "a first record that is not in a folder", r"first record 'data\.pkl' is not in a folder")
def first_record_without_a_folder(folder: Path) -> Path:
    return saved(folder, build_zip([replace(m, name=m.name.removeprefix("archive/")) for m in base_records(folder)]))


@register("extra", "no data.pkl", r"no 'archive/data\.pkl' record")
def no_pickle(folder: Path) -> Path:
    return saved(folder, build_zip([m for m in base_records(folder) if not m.name.endswith("data.pkl")]))


@register("extra", "a storage with no record", r"names storage '1', which has no record|record archive/data/1 is missing")
def storage_without_a_record(folder: Path) -> Path:
    return saved(folder, build_zip([m for m in base_records(folder) if not m.name.endswith("data/1")]))


@register("extra", "an archive with no records", r"holds no records")
def no_records(folder: Path) -> Path:
    return saved(folder, build_zip([]))
