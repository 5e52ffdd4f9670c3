"""Recognise a checkpoint's format from its first bytes, not its file name.

A `.bin` may be a torch zip, a legacy pickle or something else entirely; a `.ckpt` may be
encrypted. The extension is only used to name a format in an error message.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from convmigrate.errors import UnreadableCheckpointError
from convmigrate.vocab import Format

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# torch's legacy (pre-1.6) format opens with pickle protocol 2 and a LONG1 magic number.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
PICKLE_PROTO = b"\x80"
# A .ckpt is a sequence of `Checkpoint.value` fields: tag 0x0A (field 1, length-delimited),
# then a varint length, then the Value's own field 1 (its name), tag 0x0A again.
CKPT_FIELD_TAG = 0x0A
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
CRC_TAIL_MARK = b"crc_num"
# save_checkpoint(..., enc_key=...) opens the file with the little-endian magic 0x7F3A5ED8 plus
# the enc_mode's index (measured on MindSpore 2.10: AES-GCM D8, AES-CBC D9, SM4-CBC DA).
ENCRYPTED_CKPT_MAGICS = tuple(bytes([low]) + b"\x5e\x3a\x7f" for low in (0xD8, 0xD9, 0xDA))


def _looks_like_ckpt(head: bytes) -> bool:
    if len(head) < 3 or head[0] != CKPT_FIELD_TAG:
        return False
    position = 1
    while position < len(head) and head[position] & 0x80:  # skip the length varint
        position += 1
    return position + 1 < len(head) and head[position + 1] == CKPT_FIELD_TAG


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    (header_size,) = struct.unpack("<Q", head[:8])
    return 2 <= header_size <= SAFETENSORS_MAX_HEADER and head[8:9] == b"{"


def detect_format(path: Path) -> Format:
    """The format of the checkpoint at `path`, judged by content.

    Raises UnreadableCheckpointError naming the problem for anything that is not a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise UnreadableCheckpointError(path, "is a directory; give a checkpoint file (or a *.safetensors.index.json)")
    if not path.exists():
        raise UnreadableCheckpointError(path, "no such file")
    if path.name.endswith(".index.json"):
        _check_safetensors_index(path)
        return Format.SAFETENSORS
    try:
        with open(path, "rb") as stream:
            head = stream.read(64)
    except OSError as exc:
        raise UnreadableCheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    if not head:
        raise UnreadableCheckpointError(path, "is empty (0 bytes); it holds no checkpoint")
    # safetensors first: a header length of 128 + 256k starts with the pickle protocol byte.
    if _looks_like_safetensors(head):
        return Format.SAFETENSORS  # reader tells plain from MindSpore's flavour by metadata
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC, TORCH_LEGACY_MAGIC, PICKLE_PROTO)):
        return Format.TORCH
    if _looks_like_ckpt(head) or head.startswith(CRC_TAIL_MARK):
        return Format.CKPT
    if head.startswith(ENCRYPTED_CKPT_MAGICS):
        raise UnreadableCheckpointError(
            path,
            "is an encrypted MindSpore checkpoint (saved with enc_key); decrypt it with "
            "mindspore.load_checkpoint(..., dec_key=..., dec_mode=...) and save it again without enc_key",
        )
    if path.suffix == ".ckpt":
        raise UnreadableCheckpointError(
            path,
            "is not a protobuf MindSpore checkpoint; if it was saved with enc_key, decrypt it with "
            "mindspore.load_checkpoint(..., dec_key=...) and save it again without encryption",
        )
    raise UnreadableCheckpointError(
        path, "is not a checkpoint convmigrate knows (torch.save, safetensors, MindSpore .ckpt)"
    )


def _check_safetensors_index(path: Path) -> None:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnreadableCheckpointError(path, f"is not a readable JSON index ({exc})") from exc
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise UnreadableCheckpointError(path, "is not a sharded safetensors index (no 'weight_map')")
