"""NeMo archives (`.nemo`): the torch checkpoint inside a tar, read in place, nothing unpacked.

A `.nemo` file is a tar archive, plain or gzipped, that NeMo writes with Python's tarfile:

    ./model_config.yaml     the model's hyperparameters (named in a note; not needed to move weights)
    ./model_weights.ckpt    torch.save of the state dict: a torch zip, read by torch_zip
    ./<tokenizer files ...>

Plain tar: the weights member's bytes sit at a 512-byte-aligned offset inside the archive, and
the torch zip is read right there (`InputFile.window`): no copy, no temporary file.

Gzipped tar: the stream is inflated once, front to back, never held in memory: the weights
member is written to an anonymous temporary file (`tempfile.TemporaryFile`, in the temp folder
that TMPDIR names; the kernel frees it when the checkpoint is closed or the process dies, so
nothing is ever left behind, and the input's own folder may be read-only). Disk use is the
member's size as its tar header claims it, checked first against NEMO_MAX_INFLATE_RATIO times
the archive's size and against the free space there, and then enforced while writing. The rest
of the stream is read through to check it (a second weights member, a damaged gzip CRC).

The tar headers are parsed here (ustar, pax and GNU long names), every size checked against
what the archive holds before anything is read or allocated; tarfile would read a pax header of
any claimed size into memory. A weights member that is a link or sparse, a second
model_weights.ckpt, any member named outside the archive (`/x`, `../x`) or linking outside it
(`-> /etc/passwd`, `-> ../../x`: nothing is extracted, but such a tar is an attack) is refused
in one line. NeMo's distributed checkpoints
(a `model_weights/` folder of shards) are not read.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from convmigrate.entries import Checkpoint
from convmigrate.errors import UnreadableCheckpointError
from convmigrate.formats.input_file import InputFile, open_input, open_temporary
from convmigrate.formats.torch_zip import read_torch_archive
from convmigrate.limits import NEMO_MAX_HEADER_BYTES, NEMO_MAX_INFLATE_RATIO, NEMO_MAX_MEMBERS
from convmigrate.vocab import Format

BLOCK = 512
GZIP_MAGIC = b"\x1f\x8b"
WEIGHTS = "model_weights.ckpt"
CONFIG = "model_config.yaml"
_REGULAR = (b"0", b"\0", b"7")  # regular file, old regular file, contiguous file
_KINDS = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device", b"4": "a block device",
          b"5": "a folder", b"6": "a FIFO", b"S": "a sparse file", b"M": "a multi-volume part", b"V": "a volume label"}
_LINKS = (b"1", b"2")  # hard link, symbolic link
_COPY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Member:
    name: str  # as stored (after pax / GNU long names)
    kind: bytes  # the typeflag
    size: int
    data_offset: int  # in the (inflated) tar stream
    link: str = ""  # a link's target

    @property
    def path(self) -> str:
        """The name without leading "./" (NeMo writes "./model_weights.ckpt")."""
        return str(PurePosixPath(self.name)) if self.name not in ("", ".", "./") else "."


class _Bad(Exception):
    """A problem with the tar stream, turned into the one-line error by the caller."""


def sniff(path: Path, head: bytes) -> bool:
    """A tar (ustar magic in its first header), or a gzip whose first 512 inflated bytes are one."""
    try:
        with open(path, "rb") as stream:
            first = stream.read(8 * BLOCK)
    except OSError:
        return False
    if first.startswith(GZIP_MAGIC):
        try:
            first = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(first, BLOCK)
        except zlib.error:
            return False
    return len(first) >= BLOCK and first[257:262] == b"ustar" and _checksum_ok(first[:BLOCK])


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156])
    except _Bad:
        return False
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:BLOCK])
    signed = unsigned - sum(256 for b in header[:148] + header[156:] if b > 127)  # old tars summed signed bytes
    return stored in (unsigned, signed)


def _number(field: bytes) -> int:
    """A tar number: octal ASCII (NUL or space ended), or GNU base-256 (first byte 0x80)."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise _Bad("a negative size")
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _Bad(f"a number field {field!r} that is not octal") from None


def _pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header: "LEN key=value\\n" each."""
    records, at = {}, 0
    while at < len(data):
        space = data.find(b" ", at)
        try:
            length = int(data[at:space])
        except ValueError:
            raise _Bad("a pax header record without a length") from None
        if space < 0 or length <= 0 or at + length > len(data) or data[at + length - 1 : at + length] != b"\n":
            raise _Bad("a pax header record whose length does not match")
        key, _, value = data[space + 1 : at + length - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        at += length
    return records


class _Tar:
    """A tar stream read front to back: a plain file (data skipped by seeking) or a gzip inflating one."""

    def __init__(self, file: InputFile | None, inflated: io.BufferedIOBase | None, limit: int) -> None:
        self.file, self.inflated, self.limit, self.position = file, inflated, limit, 0
        self.bound = (f"more than NEMO_MAX_INFLATE_RATIO ({NEMO_MAX_INFLATE_RATIO}) times the archive's size: a gzip bomb?"
                      if inflated is not None else "past the end of the archive")

    def read(self, count: int) -> bytes:
        if self.position + count > self.limit:
            raise _Bad(f"it inflates to {self.bound}")
        if self.inflated is not None:
            data = self.inflated.read(count)
        else:
            assert self.file is not None
            data = self.file.read_at(self.position, count)
        self.position += len(data)
        if len(data) != count:
            raise _Bad(f"it ends {count - len(data):,} bytes early, inside a member or its header (truncated)")
        return data

    def skip_to(self, position: int, sink: io.RawIOBase | None = None) -> None:
        """Move to `position`: seek a plain file, inflate and drop (or copy to `sink`) a gzipped one."""
        if self.inflated is None and sink is None:
            if position > self.limit:
                raise _Bad(f"it ends before byte {position:,} (truncated)")
            self.position = position
            return
        while self.position < position:
            data = self.read(min(position - self.position, _COPY_BYTES))
            if sink is not None:
                sink.write(data)


    def drain(self) -> None:
        """Read (and drop) the rest of the stream: the zero padding after the end marker."""
        assert self.inflated is not None
        while data := self.inflated.read(_COPY_BYTES):
            self.position += len(data)
            if self.position > self.limit:
                raise _Bad(f"it inflates to {self.bound}")


def _members(tar: _Tar) -> Iterator[Member]:
    """Each member's header, checked; after each, the stream moves past the member's data."""
    pending: dict[str, str] = {}
    count = 0
    while True:
        at = tar.position
        header = tar.read(BLOCK)
        if header == bytes(BLOCK):
            return  # the end-of-archive marker
        if not _checksum_ok(header):
            raise _Bad(f"the tar header at byte {at:,} is damaged (checksum)")
        count += 1
        if count > NEMO_MAX_MEMBERS:
            raise _Bad(f"it holds more than NEMO_MAX_MEMBERS ({NEMO_MAX_MEMBERS:,}) members")
        kind = header[156:157]
        size = _number(header[124:136])
        name = header[:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar" and header[345:500].strip(b"\0"):
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        text = pending.pop("path", None) or name.decode("utf-8", "surrogateescape")
        if "size" in pending:
            try:
                size = int(pending.pop("size"))
            except ValueError:
                raise _Bad(f"member {text!r}: a pax size that is not a number") from None
            if size < 0:
                raise _Bad(f"member {text!r}: a negative pax size")
        link = pending.pop("linkpath", None) or header[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        metadata = kind in (b"x", b"g", b"L", b"K")  # for the next member (g: for the whole archive)
        if metadata and size > NEMO_MAX_HEADER_BYTES:
            raise _Bad(f"an extended header of {size:,} bytes exceeds NEMO_MAX_HEADER_BYTES ({NEMO_MAX_HEADER_BYTES:,})")
        end = at + BLOCK + size + -size % BLOCK
        if end > tar.limit:
            raise _Bad(f"member {text!r} claims {size:,} bytes at byte {at + BLOCK:,}, {tar.bound}")
        if metadata:
            data = tar.read(size)
            tar.skip_to(end)
            if kind == b"x":
                pending = _pax(data)
            elif kind == b"L":
                pending["path"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"K":
                pending["linkpath"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            continue
        pending = {}
        yield Member(text, kind, size, at + BLOCK, link)
        tar.skip_to(end)  # past whatever of its data the caller did not take


def _escapes(folder: tuple[str, ...], target: str) -> bool:
    """Whether `target`, taken from inside `folder`, names a path outside the archive."""
    if target.startswith("/"):
        return True
    depth = len(folder)
    for part in PurePosixPath(target).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def _is_weights(member: Member) -> bool:
    """Whether `member` is the weights; every member's name (and a link's target) checked on the way."""
    if _escapes((), member.name):
        raise _Bad(f"member {member.name!r} names a path outside the archive")
    if member.path == WEIGHTS and member.kind not in _REGULAR:
        raise _Bad(f"its {WEIGHTS} is {_KINDS.get(member.kind, f'of tar type {member.kind!r}')}, not a regular file")
    if member.kind in _LINKS:
        # Never followed here; but a link leaving the archive is how a tar attacks whoever extracts
        # it (a symbolic link's target counts from its folder, a hard link's from the top).
        folder = PurePosixPath(member.path).parent.parts if member.kind == b"2" else ()
        if _escapes(tuple(p for p in folder if p != "."), member.link):
            raise _Bad(f"member {member.name!r} links to {member.link!r}, outside the archive")
    return member.path == WEIGHTS


def _found(weights: list[Member], names: set[str]) -> Member:
    if len(weights) > 1:
        raise _Bad(f"it holds {len(weights)} members named {WEIGHTS}; which one is meant is ambiguous")
    if not weights:
        if any(n == "model_weights" or n.startswith("model_weights/") for n in names):
            raise _Bad("its weights are a distributed checkpoint (a model_weights/ folder), which convmigrate does not read")
        raise _Bad(f"it holds no {WEIGHTS}; it is not a NeMo model archive")
    return weights[0]


def _read_plain(path: Path, file: InputFile) -> tuple[InputFile, list[str]]:
    weights, names = [], set()
    for member in _members(_Tar(file, None, file.size)):
        names.add(member.path)
        if _is_weights(member):
            weights.append(member)
    member = _found(weights, names)
    return file.window(member.data_offset, member.size), sorted(names)


class _Gunzip(io.RawIOBase):
    """A gzipped InputFile inflated as a stream, by zlib alone (headers, CRC-32 and length checked
    in C): Python's gzip module reads a member's name one byte at a time in Python, so a header
    with a 1 GB unterminated name took ~2 s per MB. Members follow each other as gzip allows;
    zero padding after the last is skipped (as gzip does); anything else is a damaged stream."""

    def __init__(self, file: InputFile) -> None:
        self.file, self.position = file, 0
        self.inflater: zlib._Decompress | None = None
        self.pending = b""  # input read but not inflated yet

    def readable(self) -> bool:
        return True

    def _input(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        data = self.file.read_at(self.position, min(_COPY_BYTES, self.file.size - self.position))
        self.position += len(data)
        return data

    def _next_member(self) -> bool:
        """Start the next member (False: only zero padding was left)."""
        while True:
            data = self._input().lstrip(b"\0")
            if data:
                self.pending, self.inflater = data, zlib.decompressobj(16 + zlib.MAX_WBITS)
                return True
            if self.position >= self.file.size:
                return False

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        while True:
            if self.inflater is None and not self._next_member():
                return 0
            assert self.inflater is not None
            data = self._input()
            if not data:
                raise EOFError("it ends before the stream does: truncated")
            chunk = self.inflater.decompress(data, len(out))
            self.pending = self.inflater.unconsumed_tail
            if self.inflater.eof:
                self.pending, self.inflater = self.inflater.unused_data, None
            if chunk:
                out[: len(chunk)] = chunk
                return len(chunk)


def _read_gzipped(path: Path, file: InputFile) -> tuple[InputFile, list[str]]:
    inflated = io.BufferedReader(_Gunzip(file), _COPY_BYTES)
    tar = _Tar(None, inflated, NEMO_MAX_INFLATE_RATIO * file.size)
    weights, names = [], set()
    temporary: InputFile | None = None
    try:
        for member in _members(tar):
            names.add(member.path)
            if _is_weights(member):
                weights.append(member)
                if temporary is None:
                    temporary = _inflate_to_temporary(path, tar, member)
        tar.drain()  # on to the end of the gzip stream: gzip checks its CRC and length there
        found = _found(weights, names)
    except BaseException:
        if temporary is not None:
            temporary.close()
        raise
    assert temporary is not None and found is weights[0]
    return temporary, sorted(names)


def _inflate_to_temporary(path: Path, tar: _Tar, member: Member) -> InputFile:
    """The member's bytes in an anonymous temporary file (nothing to clean up, ever)."""
    folder = Path(tempfile.gettempdir())
    free = shutil.disk_usage(folder).free
    if member.size > free:
        raise UnreadableCheckpointError(path, f"its gzipped {WEIGHTS} needs {member.size:,} bytes of temporary space "
                                              f"and {folder} has {free:,} free; set TMPDIR to a folder with room")
    handle = tempfile.TemporaryFile(dir=folder)
    try:
        tar.skip_to(member.data_offset + member.size, handle)
        handle.flush()
        return open_temporary(path, handle)
    finally:
        handle.close()  # open_temporary keeps its own descriptor


def read_nemo(path: Path, *, select: str | None = None) -> Checkpoint:
    """Open a NeMo archive's weights (model_weights.ckpt) lazily, in place where the tar is plain.
    `select` chooses the state dict, as for a torch.save file (model_weights.ckpt is one).

    Example:
        >>> import tarfile
        >>> with tarfile.open("asr.nemo", "w") as archive:                   # as NeMo writes it
        ...     archive.add("fixtures/tiny_tcn.pt", "./model_weights.ckpt")
        >>> with read_nemo(Path("asr.nemo")) as checkpoint:
        ...     [(t.name, t.shape) for t in checkpoint.tensors()][:2]
        [('stem.weight', (8, 2, 3)), ('stem.bias', (8,))]
    """
    path = Path(path)
    file = open_input(path)
    try:
        gzipped = file.read_at(0, 2) == GZIP_MAGIC
        try:
            weights, names = (_read_gzipped if gzipped else _read_plain)(path, file)
        except _Bad as exc:
            raise UnreadableCheckpointError(path, f"damaged or unsupported NeMo archive: {exc}") from None
        except (EOFError, OSError, zlib.error) as exc:
            if isinstance(exc, UnreadableCheckpointError):
                raise
            raise UnreadableCheckpointError(path, f"damaged gzip stream ({exc})") from None
        if gzipped:
            file.close()  # the weights are in the temporary file now
        # The checkpoint closes `weights` (on an error too): a window of `file`, or the temporary file.
        checkpoint = read_torch_archive(weights, select=select, context=f"member {WEIGHTS!r}: ")
    except BaseException:
        file.close()
        raise
    checkpoint.format = Format.NEMO
    how = "inflated to a temporary file" if gzipped else "read in place"
    config = CONFIG if CONFIG in names else "no model_config.yaml"
    checkpoint.notes.insert(0, f"NeMo archive{' (gzipped)' if gzipped else ''}: weights from {WEIGHTS} ({how}); "
                               f"the model's config is {config}, not read")
    return checkpoint


__all__ = ["read_nemo", "sniff"]
