"""Hostile NeMo archives (issue 13): tars, plain or gzipped, around a torch checkpoint.

The weights inside are the corpus's small model written by convmigrate's own torch writer (no
torch needed); the tar around them is built with tarfile, or by hand where tarfile refuses to
write what the attack needs.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from pathlib import Path

import numpy as np

from convmigrate.entries import TensorEntry
from convmigrate.formats import write_checkpoint
from convmigrate.vocab import Format
from tests.corpus import register
from tests.corpus.cases_zip import deflated_zeros

CONFIG = b"encoder:\n  channels: 8\n"


def weights(folder: Path) -> bytes:
    rng = np.random.default_rng(2)
    entries = [
        TensorEntry.from_array("enc.conv.weight", rng.standard_normal((8, 4, 3)).astype(np.float32)),
        TensorEntry.from_array("enc.conv.bias", rng.standard_normal(8).astype(np.float32)),
    ]
    write_checkpoint(folder / "w.pt", entries, Format.TORCH, durable=False)
    data = (folder / "w.pt").read_bytes()
    (folder / "w.pt").unlink()
    return data


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = (len(data) if kind == tarfile.REGTYPE else 0), kind, link
    return info, data


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def nemo(folder: Path, data: bytes, gzipped: bool = False) -> Path:
    path = folder / "model.nemo"
    path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
    return path


def with_header(data: bytes, name: str, change: dict[tuple[int, int], bytes]) -> bytes:
    """`data` (a tar) with fields of member `name`'s header replaced, its checksum made right again."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        at = tar.getmember(name).offset
    out = bytearray(data)
    header = out[at : at + 512]
    for (start, stop), value in change.items():
        header[start:stop] = value
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    out[at : at + 512] = header
    return bytes(out)


def good_members(folder: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [member("./model_config.yaml", CONFIG), member("./model_weights.ckpt", weights(folder))]


@register("13", "nemo: a member whose size runs past the end of the archive", r"claims 10,000,000 bytes at byte 1,536, past the end of the archive")
def member_past_the_end(folder: Path) -> Path:
    data = with_header(tar_bytes(good_members(folder)), "./model_weights.ckpt", {(124, 136): b"%011o\0" % 10_000_000})
    return nemo(folder, data)


def gzip_member(header: bytes, zeros_mib: int) -> bytes:
    """A deflate stream (Z_FULL_FLUSH-separated) of a tar header and `zeros_mib` MiB of zeros."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(header) + packer.flush(zlib.Z_FULL_FLUSH) + deflated_zeros(zeros_mib)[:-2]


@register("13", "nemo: a gzip bomb (64 members of 16 MiB of zeros, 1 GiB in 1 MiB)",
          r"member '\./padding\d+\.bin' claims 16,777,216 bytes at byte [\d,]+, more than NEMO_MAX_INFLATE_RATIO \(32\) times")
def gzip_bomb(folder: Path) -> Path:
    # Each member's header and zeros gzipped by hand from one compressed MiB repeated (see
    # cases_zip.deflated_zeros), so the 1 GiB is never built.
    parts = []
    for index in range(64):
        info, _ = member(f"./padding{index}.bin")
        info.size = 16 << 20
        parts.append(gzip_member(info.tobuf(tarfile.GNU_FORMAT), 16))
    # gzip framing: header, the deflate stream (ended by an empty final block), CRC-32 and length
    # (wrong, and never reached).
    data = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + b"".join(parts) + b"\x03\x00" + bytes(8)
    path = folder / "model.nemo"
    path.write_bytes(data)
    return path


@register("13", "nemo: gzipped, its weights member claiming 10 GB", r"claims 10,000,000,000 bytes at byte 1,536, more than NEMO_MAX_INFLATE_RATIO")
def gzip_claims_too_much(folder: Path) -> Path:
    size = b"\x80" + (10_000_000_000).to_bytes(11, "big")  # GNU base-256 size
    return nemo(folder, with_header(tar_bytes(good_members(folder)), "./model_weights.ckpt", {(124, 136): size}), gzipped=True)


@register("13", "nemo: model_weights.ckpt is a symbolic link", r"model_weights\.ckpt is a symbolic link, not a regular file")
def weights_symlink(folder: Path) -> Path:
    return nemo(folder, tar_bytes([member("./model_config.yaml", CONFIG),
                                   member("./model_weights.ckpt", kind=tarfile.SYMTYPE, link="/etc/passwd")]))


@register("13", "nemo: model_weights.ckpt is a hard link to another member", r"model_weights\.ckpt is a hard link")
def weights_hardlink(folder: Path) -> Path:
    return nemo(folder, tar_bytes([member("./other.ckpt", weights(folder)),
                                   member("./model_weights.ckpt", kind=tarfile.LNKTYPE, link="./other.ckpt")]))


@register("13", "nemo: a member named ../model_weights.ckpt", r"member '\.\./model_weights\.ckpt' names a path outside the archive")
def parent_name(folder: Path) -> Path:
    return nemo(folder, tar_bytes([member("./model_config.yaml", CONFIG), member("../model_weights.ckpt", weights(folder))]))


@register("13", "nemo: an absolute member name", r"member '/etc/model_weights\.ckpt' names a path outside the archive")
def absolute_name(folder: Path) -> Path:
    return nemo(folder, tar_bytes([member("/etc/model_weights.ckpt", weights(folder))]))


@register("13", "nemo: 10 001 members", r"more than NEMO_MAX_MEMBERS \(10,000\) members")
def many_members(folder: Path) -> Path:
    return nemo(folder, tar_bytes([*good_members(folder), *(member(f"./f{i}") for i in range(10_000))]))


@register("13", "nemo: model_weights.ckpt is itself a NeMo archive", r"member 'model_weights\.ckpt': damaged zip archive: no zip end record")
def nested_archive(folder: Path) -> Path:
    inner = tar_bytes(good_members(folder))
    return nemo(folder, tar_bytes([member("./model_config.yaml", CONFIG), member("./model_weights.ckpt", inner)]))


@register("13", "nemo: two model_weights.ckpt members", r"holds 2 members named model_weights\.ckpt")
def two_weights(folder: Path) -> Path:
    first = weights(folder)
    return nemo(folder, tar_bytes([*good_members(folder), member("model_weights.ckpt", first)]))


@register("13", "nemo: a pax header that claims 2 MiB", r"extended header of [\d,]+ bytes exceeds NEMO_MAX_HEADER_BYTES")
def huge_pax_header(folder: Path) -> Path:
    info, data = member("./model_weights.ckpt", weights(folder))
    info.pax_headers = {"comment": "x" * (2 << 20)}
    return nemo(folder, tar_bytes([member("./model_config.yaml", CONFIG), (info, data)], tarfile.PAX_FORMAT), gzipped=True)


@register("13", "nemo: a tar header with a wrong checksum", r"tar header at byte 1,024 is damaged \(checksum\)")
def bad_checksum(folder: Path) -> Path:
    data = bytearray(tar_bytes(good_members(folder)))
    data[1024 + 100] ^= 1  # the mode field of model_weights.ckpt's header (after the config's header and data)
    return nemo(folder, bytes(data))


@register("13", "nemo: a distributed checkpoint (a model_weights/ folder)", r"distributed checkpoint")
def distributed(folder: Path) -> Path:
    return nemo(folder, tar_bytes([member("./model_config.yaml", CONFIG), member("./model_weights/", kind=tarfile.DIRTYPE),
                                   member("./model_weights/common.pt", weights(folder))]))


@register("13", "nemo: a gzip stream cut short", r"ends [\d,]+ bytes early|damaged gzip stream")
def truncated_gzip(folder: Path) -> Path:
    data = gzip.compress(tar_bytes(good_members(folder)), mtime=0)
    path = folder / "model.nemo"
    path.write_bytes(data[: len(data) // 2])
    return path


@register("13", "nemo: a gzip stream with a wrong CRC", r"damaged gzip stream \(.*incorrect data check")
def gzip_bad_crc(folder: Path) -> Path:
    data = bytearray(gzip.compress(tar_bytes(good_members(folder)), mtime=0))
    data[-8] ^= 1
    path = folder / "model.nemo"
    path.write_bytes(bytes(data))
    return path


@register("13", "nemo: a zip bomb inside the weights member", r"member 'model_weights\.ckpt': record 'archive/data\.pkl' inflates to more than")
def zip_bomb_inside(folder: Path) -> Path:
    from tests.corpus.cases_zip import pickle_bomb_with_a_small_claim

    bomb = pickle_bomb_with_a_small_claim(folder)
    inner = bomb.read_bytes()
    bomb.unlink()
    return nemo(folder, tar_bytes([member("./model_config.yaml", CONFIG), member("./model_weights.ckpt", inner)]))


@register("13", "nemo: model_weights.ckpt is a sparse file", r"model_weights\.ckpt is a sparse file")
def sparse_weights(folder: Path) -> Path:
    return nemo(folder, tar_bytes([member("./model_weights.ckpt", kind=tarfile.GNUTYPE_SPARSE)]))


def pax_record(key: str, value: str) -> bytes:
    """"LEN key=value\\n", LEN counting itself."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax_member(name: str, data: bytes, headers: dict[str, str], kind: bytes = tarfile.REGTYPE) -> bytes:
    """One member in pax format whose extended header says `headers` (tarfile would write its own
    size and link fields over a hostile one), as bytes without the end-of-archive blocks."""
    records = b"".join(pax_record(key, value) for key, value in headers.items())
    extended = tarfile.TarInfo("././@PaxHeader")
    extended.type, extended.size = tarfile.XHDTYPE, len(records)
    info, _ = member(name, data, kind)
    padding = lambda n: bytes(-n % 512)  # noqa: E731
    return (extended.tobuf(tarfile.USTAR_FORMAT) + records + padding(len(records))
            + info.tobuf(tarfile.USTAR_FORMAT) + data + padding(len(data)))


@register("13", "nemo: a pax header giving model_weights.ckpt a negative size", r"a negative pax size")
def pax_negative_size(folder: Path) -> Path:
    return nemo(folder, pax_member("./model_weights.ckpt", weights(folder), {"size": "-512"}) + bytes(1024))


@register("13", "nemo: a pax header giving model_weights.ckpt 10 GB, past the end", r"claims 10,000,000,000 bytes at byte 1,536, past the end")
def pax_size_past_the_end(folder: Path) -> Path:
    return nemo(folder, pax_member("./model_weights.ckpt", weights(folder), {"size": "10000000000"}) + bytes(1024))


@register("13", "nemo: a plain tar whose weights claim 2^80 bytes (GNU base-256)", r"claims 1,208,925,819,614,629,174,706,176 bytes")
def base256_size_past_the_end(folder: Path) -> Path:
    size = b"\x80" + (1 << 80).to_bytes(11, "big")
    return nemo(folder, with_header(tar_bytes(good_members(folder)), "./model_weights.ckpt", {(124, 136): size}))


@register("13", "nemo: a symbolic link to /etc/passwd beside the weights", r"member '\./tokenizer\.model' links to '/etc/passwd', outside the archive")
def symlink_outside(folder: Path) -> Path:
    return nemo(folder, tar_bytes([*good_members(folder), member("./tokenizer.model", kind=tarfile.SYMTYPE, link="/etc/passwd")]))


@register("13", "nemo: a symbolic link climbing out of its folder", r"member '\./vocab/spm\.model' links to '\.\./\.\./\.ssh/id_rsa', outside the archive")
def symlink_climbing(folder: Path) -> Path:
    return nemo(folder, tar_bytes([member("./vocab/spm.model", kind=tarfile.SYMTYPE, link="../../.ssh/id_rsa"), *good_members(folder)]),
                gzipped=True)


@register("13", "nemo: a hard link to ../secret (pax linkpath)", r"member '\./tokenizer\.model' links to '\.\./secret', outside the archive")
def hardlink_outside(folder: Path) -> Path:
    return nemo(folder, pax_member("./tokenizer.model", b"", {"linkpath": "../secret"}, tarfile.LNKTYPE)
                + tar_bytes(good_members(folder)))


@register("13", "nemo: a GNU long name climbing out of the archive", r"member '\./(a/){50}(\.\./){51}model_weights\.ckpt' names a path outside")
def gnu_long_name_outside(folder: Path) -> Path:
    return nemo(folder, tar_bytes([member("./model_config.yaml", CONFIG),
                                   member("./" + "a/" * 50 + "../" * 51 + "model_weights.ckpt", weights(folder))]))


@register("13", "nemo: junk after the gzip stream", r"damaged gzip stream")
def gzip_trailing_junk(folder: Path) -> Path:
    path = nemo(folder, tar_bytes(good_members(folder)), gzipped=True)
    path.write_bytes(path.read_bytes() + b"\x1f\x8bjunk")
    return path


@register("13", "nemo: a second gzip member whose name never ends (20 MiB)", r"damaged gzip stream \(it ends before the stream does")
def gzip_endless_name(folder: Path) -> Path:
    """Python's gzip module reads a member's name one byte at a time (38 s for these 20 MiB)."""
    path = nemo(folder, tar_bytes(good_members(folder)), gzipped=True)
    path.write_bytes(path.read_bytes() + b"\x1f\x8b\x08\x08\0\0\0\0\x02\xff" + b"A" * (20 << 20))
    return path
