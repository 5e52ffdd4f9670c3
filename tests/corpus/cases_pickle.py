"""Hostile torch pickles (issue 12's pickle cases and our own), built by hand, no torch needed.

Every case is a structurally valid torch.save file (zip or legacy) built to exploit one
assumption of a pickle reader: a claimed length or count, a memo index, nesting, a shared
object referenced many times, a shape, the reader's own tables. Each must be refused by every
command in one line, within the corpus's time and memory bounds.

`INERT` holds the other kind (issue 13): code in stand-in position beside a real state dict
(`os.system`, `exec`, `subprocess`, `bytearray(10**12)` ...). Those files are *read*: the state
dict comes out, nothing runs. tests/test_pickle_inert.py runs them through every command.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.corpus import register
from tests.corpus.pickles import (
    APPENDS,
    BUILD,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_TUPLE,
    FALSE,
    MARK,
    MEMOIZE,
    NONE,
    POP,
    PROTO2,
    SETITEM,
    SETITEMS,
    STOP,
    TUPLE,
    TUPLE1,
    call,
    get,
    glob,
    integer,
    legacy_file,
    legacy_storage,
    ordered_dict,
    pickle_of,
    pt_file,
    put,
    storage,
    tensor,
    text,
)

# The real state dict beside each attack (data/0): the corpus's good model, in MindSpore's shapes.
WEIGHTS = np.arange(104, dtype=np.float32)
GOOD = {
    "enc.conv.weight": tensor("0", "FloatStorage", (8, 4, 1, 3), numel=104, storage_op=storage("0", "FloatStorage", 104) + put(240)),
    "enc.conv.bias": tensor("0", "FloatStorage", (8,), offset=96, storage_op=get(240)),
}


def hostile_pt(folder: Path, name: str, body: bytes, records: dict[str, bytes] | None = None) -> Path:
    """A torch.save zip whose data.pkl is `body` (opcodes between PROTO and STOP)."""
    return pt_file(folder / name, pickle_of(body), {"0": WEIGHTS.tobytes()} if records is None else records)


# --------------------------------------------------------------------------- issue 12's cases
@register("12.2", "pickle: a 300000-deep nested tuple as a dict key", r"nests tuples deeper than 1000 levels")
def deep_tuple_key(folder: Path) -> Path:
    deep = integer(0) + TUPLE1 * 300_000  # ((((0,),),),...): 1 byte per level, hash() recurses through all
    return hostile_pt(folder, "deep_key.pt", ordered_dict([(deep, tensor("0", "FloatStorage", (24,)))]))


@register("12.5", "pickle: a memoised 8000-bit integer as 10000 dims", r"shape .*dims|dims")
def memoised_big_integer(folder: Path) -> Path:
    big = integer(2**7999 + 12345)  # 1000 bytes, read once
    shape = MARK + big + put(200) + get(200) * 9_999 + TUPLE  # 10 000 references: 21 KB in all
    stride = MARK + get(200) * 10_000 + TUPLE
    return hostile_pt(folder, "big_int.pt", ordered_dict({"w": tensor("0", "FloatStorage", shape, stride=stride, numel=24)}))


@register("12.6", "pickle: a DAG of memoised dicts, 5 levels x 60 keys", r"holds no tensors")
def dict_dag(folder: Path) -> Path:
    keys = [f"k{i}" for i in range(60)]
    body = EMPTY_DICT + MARK + text("leaf") + NONE + SETITEMS + put(0)  # level 0: not plain (None)
    body += b"".join(text(k) + put(1 + i) + POP for i, k in enumerate(keys))  # the keys, memoised
    for level in range(1, 6):
        body += EMPTY_DICT + MARK + b"".join(get(1 + i) + get(100 + level - 1 if level > 1 else 0) for i in range(60))
        body += SETITEMS + put(100 + level)
    return hostile_pt(folder, "dag.pt", body)


@register("12.7", "pickle: one 1 MiB storage viewed by 1000 memoised tensors", r"would take .* bytes")
def amplified_storage(folder: Path) -> Path:
    numel = 1 << 18  # 1 MiB of float32
    first = tensor("0", "FloatStorage", (numel,), storage_op=storage("0", "FloatStorage", numel) + put(250))
    items = [("t0", first)] + [(f"t{i}", tensor("0", "FloatStorage", (numel,), storage_op=get(250))) for i in range(1, 1000)]
    return hostile_pt(folder, "amplified.pt", ordered_dict(dict(items)), {"0": bytes(numel * 4)})


@register("12.8", "pickle: BUILD on the allow-listed torch.float32 stand-in", r"takes no state")
def build_on_dtype(folder: Path) -> Path:
    poison = glob("torch", "float32") + EMPTY_DICT + text("mindspore") + text("Int32") + SETITEM + BUILD + POP
    return hostile_pt(folder, "poison.pt", poison + ordered_dict(GOOD))


def shape_case(name: str, shape: tuple, stride: tuple | None = None) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        return hostile_pt(folder, name, ordered_dict({"w": tensor("0", "FloatStorage", shape, stride=stride, numel=24)}))

    return build


register("12.12", "pickle: shape (-1, -4)", r"shape \(-1, -4\)")(shape_case("negative.pt", (-1, -4), (-4, 1)))
register("12.12", "pickle: a float dim", r"shape \(2\.5,\)")(shape_case("float_dim.pt", (2.5,), (1,)))
register("12.12", "pickle: a str dim", r"shape \('a',\)")(shape_case("str_dim.pt", ("a",), (1,)))
register("12.12", "pickle: a 2^70 dim", r"shape \(1180591620717411303424,\)")(shape_case("huge_dim.pt", (2**70,), (1,)))
register("12.20", "pickle: dims of 2^63 with zero elements", r"shape \(0, 9223372036854775808\)")(
    shape_case("zero_huge.pt", (0, 2**63), (1, 1)))


# --------------------------------------------------------------------------- our own: claims
# Commands for our own cases: each reads the file through the same reader, so three suffice (the
# numbered cases above run through every command).
READING = ("inspect --json", "convert -> ckpt", "torch2ms --reference")


def raw_case(item: str, title: str, problem: str, data_pkl: bytes, name: str = "raw.pt") -> None:
    """A case whose data.pkl is `data_pkl`, byte for byte, beside a good storage record."""
    register(item, title, problem, commands=READING)(lambda folder: pt_file(folder / name, data_pkl, {"0": WEIGHTS.tobytes()}))


def with_good(attack: bytes) -> bytes:
    """data.pkl of {"state_dict": the good state dict, "attack": <attack>}: the attack comes last,
    so a length it claims reaches past the end of the pickle."""
    return pickle_of(EMPTY_DICT + MARK + text("state_dict") + ordered_dict(GOOD) + text("attack") + attack + SETITEMS)


Q = struct.Struct("<Q")
# Every opcode that carries a length or a count, claiming more than the file holds (or than a
# limit allows), each beside a good state dict: refused before anything is allocated.
for title, attack, problem in [
    ("LONG4 claims 2 GiB", b"\x8b" + struct.pack("<i", 2**31 - 1), r"integer of 2,147,483,647 bytes .*PICKLE_MAX_INT_BYTES"),
    ("LONG4 of 2 KiB", b"\x8b" + struct.pack("<i", 2048) + bytes(2048), r"integer of 2,048 bytes"),
    ("LONG4 of a negative length", b"\x8b" + struct.pack("<i", -5), r"claims -5 bytes"),
    ("LONG1 past the end", b"\x8a\xff\x01", r"claims 255 bytes at byte \d+, where 3 remain"),
    ("BINUNICODE claims 4 GiB", b"X" + struct.pack("<I", 2**32 - 1), r"claims 4,294,967,295 bytes"),
    ("BINUNICODE8 claims 2^63", b"\x8d" + Q.pack(2**63), r"claims 9,223,372,036,854,775,808 bytes"),
    ("BINBYTES8 claims 2^64-1", b"\x8e" + Q.pack(2**64 - 1), r"claims 18,446,744,073,709,551,615 bytes"),
    ("BYTEARRAY8 claims 1 TB", b"\x96" + Q.pack(10**12), r"claims 1,000,000,000,000 bytes"),
    ("BINSTRING claims 2 GiB", b"T" + struct.pack("<i", 2**31 - 1), r"claims 2,147,483,647 bytes"),
    ("SHORT_BINBYTES past the end", b"C\xff", r"claims 255 bytes at byte \d+, where 2 remain"),
    ("FRAME claims 2^62 bytes", b"\x95" + Q.pack(2**62), r"claims a frame of 4,611,686,018,427,387,904 bytes"),
    ("LONG_BINGET of a memo entry never stored", b"j\xff\xff\xff\xff", r"memo entry 4294967295, which it never stored"),
    ("text GET of a memo entry never stored", b"g99\n", r"memo entry 99, which it never stored"),
    ("text INT of 100 000 digits", b"I" + b"9" * 100_000 + b"\n", r"integer of 100,000 digits"),
    ("text LONG of 5000 digits", b"L" + b"7" * 5000 + b"L\n", r"integer of 5,000 digits"),
    ("text STRING not quoted", b"Sabc\n", r"STRING argument is not quoted"),
    ("text FLOAT that is not one", b"Fnot-a-float\n", r"where a float belongs"),
    ("text line without its end", b"I12345", r"ends inside a text argument"),  # "u." follow: no newline
    ("GLOBAL whose module name is not UTF-8", b"c\xff\xfe\nx\n", r"a module name in the pickle is not UTF-8"),
    ("BINUNICODE that is not UTF-8", b"X\x02\x00\x00\x00\xc3\x28", r"a text in the pickle is not UTF-8"),
    ("NEXT_BUFFER (out-of-band data)", b"\x97", r"out-of-band buffers"),
    ("an opcode that does not exist", b"\xff", r"byte 0xff at byte \d+, which is no pickle opcode"),
    ("a list as a dict key", b"}]K\x01s", r"uses a list as a dict key"),
    ("a tuple holding a list as a set item", b"\x8f(]\x85\x90", r"uses a tuple as a dict key or set item"),
    ("STACK_GLOBAL of numbers", b"K\x01K\x02\x93", r"STACK_GLOBAL names a global with something other than text"),
    ("REDUCE with arguments that are not a tuple", b"cos\nsystem\nK\x01R", r"calls os\.system with 1 instead of an argument tuple"),
    ("NEWOBJ with arguments that are not a tuple", b"cos\nsystem\nK\x01\x81", r"NEWOBJ is given arguments that are not a tuple"),
    ("BUILD on the torch.FloatStorage stand-in", b"ctorch\nFloatStorage\n}X\x01\x00\x00\x00aK\x01sb", r"BUILD gives state to torch\.FloatStorage"),
    ("SETITEM on the OrderedDict stand-in", b"ccollections\nOrderedDict\nK\x01K\x02s", r"sets dict items on collections\.OrderedDict"),
    ("APPEND to the torch.float32 stand-in", b"ctorch\nfloat32\nK\x01a", r"appends to torch\.float32"),
    ("ADDITEMS to a dict", b"}(K\x01\x90", r"adds set items to a dict"),
]:
    raw_case("extra", f"pickle: {title}", problem, with_good(attack))

# The pickle's stack and MARKs not adding up.
for title, body, problem in [
    ("100 000 nested MARKs", b"(" * 100_000, r"nests MARKs deeper than 1000"),
    ("POP on an empty stack", b"0", r"damaged near byte"),
    ("SETITEMS without a MARK", b"}u", r"damaged near byte"),
    ("TUPLE3 on one item", b"K\x01\x87", r"TUPLE3 finds 1 items"),
    ("SETITEMS of an odd number of items", b"}(K\x01u", r"odd number of items"),
]:
    raw_case("extra", f"pickle: {title}", problem, PROTO2 + body + STOP)
raw_case("extra", "pickle: STOP on an empty stack", r"stops with nothing on its stack", PROTO2 + STOP)
raw_case("extra", "pickle: no STOP", r"ends before its STOP opcode", PROTO2 + ordered_dict(GOOD))
raw_case("extra", "pickle: protocol 6", r"protocol 6 \(this reader knows 0 to 5\)", b"\x80\x06" + ordered_dict(GOOD) + STOP)


# --------------------------------------------------------------------------- our own: sizes and counts
@register("extra", "pickle: a memo of 2 million entries (MEMOIZE)", r"memo grows past 2,000,000 entries", commands=READING)
def memo_flood(folder: Path) -> Path:
    return hostile_pt(folder, "memo.pt", NONE + MEMOIZE * 2_000_001)


@register("extra", "pickle: 2 million empty lists", r"builds more than 2,000,000 objects", commands=READING)
def object_flood(folder: Path) -> Path:
    return hostile_pt(folder, "objects.pt", MARK + EMPTY_LIST * 2_000_001 + TUPLE)


@register("extra", "pickle: set() of a memoised 100 000-item list, 100 times", r"builds more than 2,000,000 objects",
          commands=READING)
def set_amplification(folder: Path) -> Path:
    items = EMPTY_LIST + put(0) + MARK + integer(7) * 100_000 + APPENDS
    calls = MARK + (glob("builtins", "set") + get(0) + TUPLE1 + b"R") * 100 + TUPLE
    return hostile_pt(folder, "sets.pt", items + b"0" + calls)


@register("extra", "pickle: _codecs.encode of a memoised 64 KiB text, 1000 times", r"makes more bytes than it holds",
          commands=READING)
def bytes_amplification(folder: Path) -> Path:
    encode = glob("_codecs", "encode") + put(1) + b"0"
    calls = MARK + (get(1) + get(0) + text("latin1") + b"\x86R") * 1000 + TUPLE
    return hostile_pt(folder, "bytes.pt", text("x" * 65536) + put(0) + b"0" + encode + calls)


# --------------------------------------------------------------------------- our own: structure
REPUT = b"r" + struct.pack("<I", 0) + POP  # LONG_BINPUT 0, then off the stack


@register("extra", "pickle: a 100 000-deep nest of lists, no tensors", r"holds no tensors", commands=READING)
def deep_lists(folder: Path) -> Path:
    # [[[[...]]]] built from the inside out through the memo: 100 000 levels in 1 MB, no MARKs.
    body = EMPTY_LIST + put(0) + POP + (EMPTY_LIST + get(0) + b"a" + REPUT) * 100_000 + get(0)
    return hostile_pt(folder, "deep_lists.pt", EMPTY_DICT + text("deep") + body + SETITEM)


@register("extra", "pickle: a dict that holds itself, no tensors", r"holds no tensors", commands=READING)
def self_dict(folder: Path) -> Path:
    return hostile_pt(folder, "self.pt", EMPTY_DICT + put(0) + text("self") + get(0) + SETITEM + text("none") + NONE + SETITEM)


@register("extra", "pickle: a 100 000-deep chain of wrapper dicts with the state dict at the bottom", r"holds no tensors",
          commands=READING)
def deep_wrappers(folder: Path) -> Path:
    # {"model": {"model": ... {"model": state dict}}}: the search looks three levels down, no more.
    body = ordered_dict(GOOD) + put(0) + POP + (EMPTY_DICT + text("model") + get(0) + SETITEM + REPUT) * 100_000 + get(0)
    return hostile_pt(folder, "deep_wrappers.pt", body)


def module(name: str, parameters: bytes = EMPTY_DICT, children: bytes = EMPTY_DICT) -> bytes:
    """A pickled nn.Module as torch.save writes one: NEWOBJ of its class, BUILD of its __dict__."""
    state = EMPTY_DICT + MARK + text("_parameters") + parameters + text("_buffers") + EMPTY_DICT + text("_modules") + children + SETITEMS
    return glob("my.models", name) + EMPTY_TUPLE + b"\x81" + state + BUILD



@register("extra", "pickle: a module tree that holds itself", r"nests deeper than 1000 modules \(is it cyclic\?\)",
          commands=READING)
def cyclic_modules(folder: Path) -> Path:
    # net._modules["self"] = net: torch's state_dict() would recurse forever.
    net = glob("my.models", "Net") + EMPTY_TUPLE + b"\x81" + put(0)
    state = EMPTY_DICT + MARK + text("_parameters") + ordered_dict(GOOD) + text("_buffers") + EMPTY_DICT
    state += text("_modules") + EMPTY_DICT + text("self") + get(0) + SETITEM + SETITEMS
    return hostile_pt(folder, "cyclic.pt", net + state + BUILD)


@register("extra", "pickle: a module tree of 40 levels sharing their children (2^40 names)",
          r"names more than 100,000 tensors \(STATE_DICT_MAX_ENTRIES\)", commands=READING)
def exponential_modules(folder: Path) -> Path:
    body = module("Leaf", ordered_dict(GOOD)) + put(0)
    for level in range(1, 41):
        children = EMPTY_DICT + MARK + text("a") + get(level - 1) + text("b") + get(level - 1) + SETITEMS
        body += module("Node", children=children) + put(level) + (b"0" if level < 40 else b"")
    return hostile_pt(folder, "dag_modules.pt", body)


# --------------------------------------------------------------------------- our own: tensors
def tensor_case(title: str, problem: str, value: bytes, records: dict[str, bytes] | None = None) -> None:
    register("extra", f"pickle: {title}", problem, commands=READING)(
        lambda folder: hostile_pt(folder, "tensor.pt", ordered_dict({"w": value}), records))


rebuild = glob("torch._utils", "_rebuild_tensor_v2")
hooks = call(glob("collections", "OrderedDict"))
tensor_case("a storage claiming 2^62 elements of a 416-byte record", r"record archive/data/0 holds 416 bytes, the pickle claims",
            tensor("0", "FloatStorage", (4,), numel=2**62))
tensor_case("a storage of 2^64 elements", r"storage is named '0' with 18446744073709551616 elements",
            tensor("0", "FloatStorage", (4,), numel=2**64))
tensor_case("a storage key that is a number", r"storage is named 7 with", tensor("0", "FloatStorage", (4,),
            storage_op=MARK + text("storage") + glob("torch", "FloatStorage") + integer(7) + text("cpu") + integer(4) + TUPLE + b"Q"))
tensor_case("a storage record that is missing", r"record archive/data/7 is missing", tensor("7", "FloatStorage", (4,)))
tensor_case("an offset past the end of its storage", r"reads 420 bytes of storage '0', which holds 416",
            tensor("0", "FloatStorage", (4,), offset=101, numel=104))
tensor_case("a stride reaching past its storage", r"reads \d+ bytes of storage '0', which holds 416",
            tensor("0", "FloatStorage", (2, 3), stride=(200, 1), numel=104))
tensor_case("a negative storage offset", r"storage offset -1 is not", tensor("0", "FloatStorage", (4,), offset=-1, numel=104))
tensor_case("65 dims", r"shape has 65 dims \(at most 64", tensor("0", "FloatStorage", (1,) * 65, numel=104))
tensor_case("shape and stride of different lengths", r"differ in length", tensor("0", "FloatStorage", (2, 2), stride=(1,), numel=104))
tensor_case("a negative stride", r"stride \(-1,\) is not a stride", tensor("0", "FloatStorage", (4,), stride=(-1,), numel=104))
tensor_case("_rebuild_tensor_v2 with 9 arguments", r"_rebuild_tensor_v2 is called with 9 arguments",
            call(rebuild, *[integer(0)] * 9))
tensor_case("a tensor rebuilt from a text", r"rebuilt from 'x', not from a storage",
            call(rebuild, text("x"), integer(0), b"K\x01\x85", b"K\x01\x85", FALSE, hooks))
tensor_case("metadata it does not know", r"carries metadata .* this reader does not know",
            call(rebuild, storage("0", "FloatStorage", 104), integer(0), b"K\x01\x85", b"K\x01\x85", FALSE, hooks,
                 EMPTY_DICT + text("sparse") + b"\x88" + SETITEM))
tensor_case("a bool tensor with torch's negative bit", r"bool tensors cannot have",
            call(rebuild, storage("0", "BoolStorage", 416), integer(0), b"K\x01\x85", b"K\x01\x85", FALSE, hooks,
                 EMPTY_DICT + text("neg") + b"\x88" + SETITEM))
tensor_case("a quantized tensor", r"tensor 'w' is a quantized tensor; only dense tensors can be converted",
            call(glob("torch._utils", "_rebuild_qtensor"), storage("0", "QInt8Storage", 4), integer(0)))
tensor_case("a tensor of a storage class it does not carry", r"tensor 'w' is a tensor of storage 'torch\.ComplexFloatStorage'",
            tensor("0", "ComplexFloatStorage", (2,), numel=2))
tensor_case("BUILD on a tensor", r"BUILD gives state to a TensorRecord, which takes no state",
            tensor("0", "FloatStorage", (4,), numel=104) + EMPTY_DICT + text("x") + integer(1) + SETITEM + BUILD)


# --------------------------------------------------------------------------- our own: the legacy format
def legacy_case(title: str, problem: str, build: Callable[[Path], Path]) -> None:
    register("extra", f"pickle: legacy: {title}", problem, commands=READING)(build)


def legacy_state(numel: int = 104, view: bytes = NONE) -> bytes:
    return pickle_of(ordered_dict({"w": call(rebuild, legacy_storage("k", "FloatStorage", numel, view), integer(0),
                                                      b"K\x04\x85", b"K\x01\x85", FALSE, hooks)}))


RAW = WEIGHTS.tobytes()
legacy_case("a wrong magic number", r"lacks torch's magic number",
            lambda folder: written_bytes(folder / "magic.pt", pickle_of(integer(12345)) + pickle_of(integer(1001))))
legacy_case("protocol version 1002", r"legacy torch\.save file of protocol 1002",
            lambda folder: written_bytes(folder / "version.pt", pickle_of(integer(0x1950A86A20F9469CFC6C)) + pickle_of(integer(1002))))
legacy_case("a storage larger than the file", r"storage 'k' claims 4,000,000,000,000 bytes at byte \d+, where 416 remain",
            lambda folder: legacy_file(folder / "big.pt", legacy_state(10**12), [("k", 10**12, RAW)]))
legacy_case("a count that disagrees with the pickle", r"storage 'k' holds 50 elements, its pickle claims 104",
            lambda folder: legacy_file(folder / "count.pt", legacy_state(), [("k", 50, RAW)]))
legacy_case("a negative count", r"storage 'k' holds -1 elements",
            lambda folder: legacy_file(folder / "negative.pt", legacy_state(), [("k", -1, RAW)]))
legacy_case("a storage key its pickle never names", r"lists storage 'other' that its pickle never names",
            lambda folder: legacy_file(folder / "unnamed.pt", legacy_state(), [("other", 104, RAW)]))
legacy_case("a storage key listed twice", r"lists storage 'k' twice",
            lambda folder: legacy_file(folder / "twice.pt", legacy_state(), [("k", 104, RAW), ("k", 104, RAW)]))


def truncated_legacy(folder: Path) -> Path:
    full = legacy_file(folder / "full.pt", legacy_state(), [("k", 104, RAW)])
    data = full.read_bytes()
    full.unlink()
    return written_bytes(folder / "cut.pt", data[: -len(RAW) - 4])


legacy_case("truncated before a storage's size", r"ends before the size of storage 'k'", truncated_legacy)
legacy_case("a view reaching past its storage", r"a view of storage 'k' \(100 \+ 10 elements\) reaches past its 104",
            lambda folder: legacy_file(folder / "view.pt", legacy_state(view=text("v") + integer(100) + integer(10) + b"\x87"),
                                       [("k", 104, RAW)]))
legacy_case("a header pickle that names a storage", r"a header pickle of the legacy format names a storage",
            lambda folder: written_bytes(folder / "header.pt", pickle_of(integer(0x1950A86A20F9469CFC6C)) + pickle_of(integer(1001))
                                         + pickle_of(legacy_storage("k", "FloatStorage", 1))))


def written_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- issue 13: read, never run
# The corpus's good model (tests/test_corpus.good_files: the same seed, the same values) as a
# torch.save zip, with code in stand-in position beside it. Reading must give the same tensors
# as the clean file, and run nothing: every attack would create `marker`.
_RNG = np.random.default_rng(0)
GOOD_WEIGHT = _RNG.standard_normal((8, 4, 3)).astype(np.float32)
GOOD_BIAS = _RNG.standard_normal(8).astype(np.float32)
GOOD_TORCH = {
    "enc.conv.weight": tensor("0", "FloatStorage", (8, 4, 3), numel=104, storage_op=storage("0", "FloatStorage", 104) + put(240)),
    "enc.conv.bias": tensor("0", "FloatStorage", (8,), offset=96, storage_op=get(240)),
}
INERT: dict[str, Callable[[Path, Path], Path]] = {}


def inert(title: str, where: str = "beside") -> Callable[[Callable[[Path], bytes]], Callable[[Path], bytes]]:
    """Register `attack(marker) -> opcodes`: placed beside the state dict (a wrapper key), in it
    (a value among the tensors) or around it (the hyper-parameters object holding it)."""

    def add(attack: Callable[[Path], bytes]) -> Callable[[Path], bytes]:
        def build(folder: Path, marker: Path) -> Path:
            evil = attack(marker)
            if where == "beside":
                body = EMPTY_DICT + MARK + text("state_dict") + ordered_dict(GOOD_TORCH) + text("evil") + evil + SETITEMS
            elif where == "in":
                body = ordered_dict({**GOOD_TORCH, "evil": evil})
            else:  # "around": an object of an unknown class whose attributes hold both
                state = EMPTY_DICT + MARK + text("state_dict") + ordered_dict(GOOD_TORCH) + text("hook") + evil + SETITEMS
                body = glob("my.trainer", "Checkpoint") + EMPTY_TUPLE + b"\x81" + state + BUILD
            data = np.concatenate([GOOD_WEIGHT.reshape(-1), GOOD_BIAS]).tobytes()
            return pt_file(folder / "inert.pt", pickle_of(body), {"0": data})

        INERT[f"{title} ({where} the state dict)"] = build
        return attack

    return add


def shell(marker: Path) -> bytes:
    return text(f"touch {marker}")


@inert("os.system")
def os_system(marker: Path) -> bytes:
    return call(glob("os", "system"), shell(marker))


@inert("posix.system", where="in")
def posix_system(marker: Path) -> bytes:
    return call(glob("posix", "system"), shell(marker))


@inert("builtins.exec", where="around")
def builtins_exec(marker: Path) -> bytes:
    return call(glob("builtins", "exec"), text(f"open({str(marker)!r}, 'w')"))


@inert("builtins.eval")
def builtins_eval(marker: Path) -> bytes:
    return call(glob("builtins", "eval"), text(f"__import__('os').system('touch {marker}')"))


@inert("subprocess.check_call")
def subprocess_call(marker: Path) -> bytes:
    return call(glob("subprocess", "check_call"), EMPTY_LIST + MARK + text("touch") + text(str(marker)) + APPENDS)


@inert("subprocess.Popen by NEWOBJ_EX", where="in")
def subprocess_popen(marker: Path) -> bytes:
    args = EMPTY_LIST + MARK + text("touch") + text(str(marker)) + APPENDS
    return glob("subprocess", "Popen") + EMPTY_TUPLE + EMPTY_DICT + text("args") + args + SETITEM + b"\x92"


@inert("bytearray(10**12)")
def huge_bytearray(marker: Path) -> bytes:
    return call(glob("builtins", "bytearray"), integer(10**12))


@inert("STACK_GLOBAL os.system (protocol 4)")
def stack_global(marker: Path) -> bytes:
    return text("os") + text("system") + b"\x93" + shell(marker) + TUPLE1 + b"R"


@inert("INST os.system (protocol 0)", where="in")
def inst(marker: Path) -> bytes:
    return MARK + shell(marker) + b"ios\nsystem\n"


@inert("OBJ os.system (protocol 1)")
def obj(marker: Path) -> bytes:
    return MARK + glob("os", "system") + shell(marker) + b"o"


@inert("getattr(os, 'system')(...)", where="around")
def getattr_call(marker: Path) -> bytes:
    system = call(glob("builtins", "getattr"), call(glob("importlib", "import_module"), text("os")), text("system"))
    return system + shell(marker) + TUPLE1 + b"R"


@inert("copyreg._reconstructor of os.system")
def reconstructor(marker: Path) -> bytes:
    return call(glob("copyreg", "_reconstructor"), glob("os", "system"), glob("builtins", "object"), shell(marker))


@inert("an EXT1 code of copyreg's registry")
def extension(marker: Path) -> bytes:
    return b"\x82\x01" + shell(marker) + TUPLE1 + b"R"


@inert("pickle.loads of a second pickle")
def nested_pickle(marker: Path) -> bytes:
    inner = b"cos\nsystem\n(" + f"S'touch {marker}'\n".encode() + b"tR."
    return call(glob("pickle", "loads"), b"C" + bytes([len(inner)]) + inner if len(inner) < 256 else b"B" + struct.pack("<I", len(inner)) + inner)


@inert("torch.load of another file", where="in")
def torch_load(marker: Path) -> bytes:
    return call(glob("torch", "load"), text(str(marker)), EMPTY_DICT + text("weights_only") + FALSE + SETITEM)


@inert("a NumPy array claiming 10^12 elements", where="around")
def numpy_array(marker: Path) -> bytes:
    array = call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), integer(0) + TUPLE1, b"C\x01b")
    state = MARK + integer(1) + integer(10**12) + TUPLE1 + call(glob("numpy", "dtype"), text("f8")) + FALSE + b"C\x00" + TUPLE
    return array + state + BUILD
