"""Deterministic mutants of a real file: the corrupt inputs the reliability lane feeds every reader.

``mutants(data, n, seed, kind)`` returns ``n`` ``(label, bytes)`` pairs, the same
ones on every run for one seed. Byte-level mutations (any format):

- ``truncate@F``: the first fraction F of the file (a download cut short);
- ``flip-header``: bytes flipped in the first 64 (magic, root offsets, vtables);
- ``flip``: a few bytes flipped anywhere;
- ``zero``: a range set to zeros (a sparse file, a bad sector);
- ``dup``: a chunk copied in again (a resumed transfer that repeated a block);
- ``huge``: a 4-byte little-endian field overwritten with 0x7fffffff / 0xffffffff
  (a length or offset that points far outside the file).

Format-aware mutations, so a mutant gets past the outer checksum or header
and reaches the parser behind it:

- ``kind="flatbuffer"`` (.tflite): ``vtable``: huge or small values written at
  4-byte aligned positions in the first 512 bytes, where the root table, its
  vtable and the first vectors' offsets sit;
- ``kind="zip"`` (.pt2, .npz): ``member``: one member's content mutated and the
  archive rewritten with valid CRCs (names and sizes then disagree with what
  the reader expects, not the zip layer);
- ``kind="safetensors"``: ``header-len`` (the 8-byte JSON length set to huge,
  zero or one past the file) and ``header-json`` (bytes of the JSON header
  flipped or its text cut).
"""

from __future__ import annotations

import io
import random
import struct
import zipfile

TRUNCATE_AT = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
HUGE = (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x10000000)


def _flip(rng: random.Random, data: bytearray, lo: int, hi: int, count: int) -> None:
    hi = max(lo + 1, min(hi, len(data)))
    for _ in range(count):
        i = rng.randrange(lo, hi)
        data[i] ^= rng.choice((0x01, 0x80, 0xFF, rng.randrange(1, 256)))


def _byte_mutant(rng: random.Random, data: bytes, how: str) -> bytes:
    out = bytearray(data)
    n = len(out)
    if how == "flip-header":
        _flip(rng, out, 0, 64, rng.randint(1, 3))
    elif how == "flip":
        _flip(rng, out, 0, n, rng.randint(1, 8))
    elif how == "zero":
        start = rng.randrange(n)
        length = min(n - start, rng.randint(4, max(4, n // 8)))
        out[start:start + length] = bytes(length)
    elif how == "dup":
        start = rng.randrange(n)
        chunk = data[start:start + rng.randint(1, max(1, n // 10))]
        at = rng.randrange(n)
        out[at:at] = chunk
    elif how == "huge":
        at = rng.randrange(0, max(1, n - 4)) & ~3
        out[at:at + 4] = struct.pack("<I", rng.choice(HUGE))
    else:
        raise ValueError(how)
    return bytes(out)


def _vtable_mutant(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    top = min(len(out) - 4, 512)
    for _ in range(rng.randint(1, 2)):
        at = rng.randrange(0, max(1, top)) & ~3
        value = rng.choice((*HUGE, 0, 1, 3, len(data), len(data) + 4, rng.randrange(0, 1 << 16)))
        out[at:at + 4] = struct.pack("<I", value)
    return bytes(out)


def _zip_mutant(rng: random.Random, data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    infos = src.infolist()
    victim = rng.randrange(len(infos))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
        for k, info in enumerate(infos):
            content = src.read(info)
            if k == victim:
                how = rng.choice(("truncate", "flip", "flip-header", "zero", "huge", "dup")) if content else "dup"
                if how == "truncate":
                    content = content[:rng.randrange(len(content))]
                elif content:
                    content = _byte_mutant(rng, content, how)
            dst.writestr(info.filename, content)
    return buf.getvalue()


def _safetensors_mutant(rng: random.Random, data: bytes) -> bytes:
    (length,) = struct.unpack("<Q", data[:8])
    out = bytearray(data)
    if rng.random() < 0.4:
        out[:8] = struct.pack("<Q", rng.choice((0, 1, length - 1, length + 1, len(data), 1 << 40, (1 << 64) - 1)))
        return bytes(out)
    header = bytearray(data[8:8 + length])
    if rng.random() < 0.5:
        _flip(rng, header, 0, len(header), rng.randint(1, 4))
    else:  # a value edited by hand: digits replaced by others keep the JSON valid but the offsets wrong
        digits = [i for i, c in enumerate(header) if 48 <= c <= 57]
        for i in rng.sample(digits, min(len(digits), rng.randint(1, 3))):
            header[i] = rng.choice(b"0123456789")
    return bytes(out[:8] + header + out[8 + length:])


def mutants(data: bytes, n: int, seed: int, kind: str = "bytes") -> list[tuple[str, bytes]]:
    """``n`` seeded ``(label, bytes)`` mutants of ``data`` (see the module docstring); never ``data`` itself."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for frac in TRUNCATE_AT:  # every kind gets the truncations first: the commonest real corruption
        if len(out) < n:
            out.append((f"truncate@{frac:g}", data[:int(len(data) * frac)]))
    if len(out) < n:
        out.append(("truncate@-1", data[:-1]))
    extra = {"flatbuffer": ["vtable"] * 3, "zip": ["member"] * 6, "safetensors": ["safetensors"] * 4}.get(kind, [])
    pool = ["flip-header", "flip", "flip", "zero", "dup", "huge", *extra]
    k = 0
    while len(out) < n:
        how = pool[k % len(pool)]
        k += 1
        if how == "vtable":
            mutant = _vtable_mutant(rng, data)
        elif how == "member":
            mutant = _zip_mutant(rng, data)
        elif how == "safetensors":
            mutant = _safetensors_mutant(rng, data)
        else:
            mutant = _byte_mutant(rng, data, how)
        if mutant != data:
            out.append((f"{how}#{k}", mutant))
    return out


def onnx_cases(data: bytes) -> list[tuple[str, bytes]]:
    """Hand-made structural edits of a real ONNX model that byte flips rarely reach: files that parse as
    protobuf but lie (huge or negative dims, external data outside the model's folder, unknown opset, a
    dangling input, a cycle, deep nesting)."""
    import onnx
    from onnx import TensorProto, helper

    def edited(label, edit):
        model = onnx.load_model_from_string(data)
        edit(model)
        return label, model.SerializeToString()

    def dims(value):
        def edit(m):
            for d in m.graph.input[0].type.tensor_type.shape.dim:
                d.Clear()
                d.dim_value = value
        return edit

    def external(location):
        def edit(m):
            t = m.graph.initializer[0]
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            t.external_data.add(key="location", value=location)
        return edit

    def opset(m):
        m.opset_import[0].version = 10 ** 6

    def ir(m):
        m.ir_version = 1 << 40

    def dangling(m):
        m.graph.node[0].input[0] = "nowhere"

    def cycle(m):
        m.graph.node[0].input[0] = m.graph.node[-1].output[0]

    def init_dims(m):
        del m.graph.initializer[0].dims[:]
        m.graph.initializer[0].dims.extend([1 << 31, 1 << 31])

    def many_dims(m):
        shape = m.graph.input[0].type.tensor_type.shape
        for _ in range(5000):
            shape.dim.add().dim_value = 1

    def nested(m, depth=30):
        body = plain = m.graph
        for k in range(depth):
            cond = helper.make_tensor_value_info(f"c{k}", TensorProto.BOOL, [])
            node = helper.make_node("If", [f"c{k}"], [body.output[0].name], then_branch=body, else_branch=plain)
            body = helper.make_graph([node], f"g{k}", [cond, *m.graph.input], list(m.graph.output))
        m.graph.CopyFrom(body)

    cases = [("dims-huge", dims(1 << 62)), ("dims-negative", dims(-5)), ("dims-zero", dims(0)),
             ("external-escape", external("../../../../../../etc/passwd")), ("external-absolute", external("/etc/passwd")),
             ("external-missing", external("weights.bin")), ("opset-huge", opset), ("ir-huge", ir),
             ("dangling-input", dangling), ("cycle", cycle), ("initializer-dims-huge", init_dims),
             ("rank-5000", many_dims), ("nested-if-30", nested)]
    return [edited(label, edit) for label, edit in cases]
