"""Safetensors interop with PyTorch (ctest interop.safetensors; the C++ side is safetensors_interop.cpp).

  safetensors_interop.py BINARY WORK_DIR

1. Python writes a file on its own (json + struct, the bytes from torch) with every dtype PyTorch
   has, in a header order that differs from the data order, and tricks reads it: every tensor's
   name, dtype, shape, offsets, bytes and (for float dtypes) values as PyTorch converts them.
2. tricks writes a file and Python reads it: the layout (header padded with spaces to 8 bytes,
   tensors back to back), the metadata, and F16/BF16 bits equal to PyTorch's own rounding of the
   same floats.
3. Files that break the format (duplicate key, a gap in the data) are refused naming the file.
The safetensors package is not used: Debian lacks it. Exits 77 (skipped) without python3-torch.
"""
import json
import os
import struct
import subprocess
import sys

try:
    import torch
except ImportError:
    print("SKIP: python3-torch is not installed (scripts/bootstrap.sh --peers)")
    sys.exit(77)

NAMES = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32",
         torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64"}
TORCH = {v: k for k, v in NAMES.items()}
FLOATS = {torch.float16, torch.bfloat16, torch.float32, torch.float64}


def raw(t):
    t = t.contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def file_bytes(header_obj, data):
    text = json.dumps(header_obj, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32bits(t):
    return t.to(torch.float32).reshape(-1).view(torch.int32).numpy().astype("uint32").tolist()


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def python_writes(binary, work):
    g = torch.Generator().manual_seed(7)
    tensors = {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "half": torch.randn(5, generator=g).to(torch.float16),
        "brain": (torch.randn(2, 3, generator=g) * 1000).to(torch.bfloat16),
        "double": torch.tensor([0.1, -1e300, 2.5, 1e-50], dtype=torch.float64),
        "bn.num_batches_tracked": torch.tensor(123456789012, dtype=torch.int64),
        "bytes": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "signed": torch.tensor([-128, 5], dtype=torch.int8),
        "shorts": torch.tensor([-2, 30000], dtype=torch.int16),
        "ints": torch.tensor([-5, 2**31 - 1], dtype=torch.int32),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
    }
    tensors["half"][0] = float("inf")
    order = list(tensors)
    data_order = list(reversed(order))  # the data in the opposite order: offsets, not order, locate tensors
    offsets, data = {}, b""
    for name in data_order:
        b = raw(tensors[name])
        offsets[name] = [len(data), len(data) + len(b)]
        data += b
    header = {"__metadata__": {"format": "pt", "written_by": "python"}}
    for name in order:
        t = tensors[name]
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": offsets[name]}
    path = os.path.join(work, "python.safetensors")
    with open(path, "wb") as f:
        f.write(file_bytes(header, data))
    out = subprocess.run([binary, "dump", path], capture_output=True, text=True)
    if out.returncode != 0:
        fail("tricks could not read Python's file: " + out.stderr)
    got = json.loads(out.stdout)
    if [t["name"] for t in got["tensors"]] != order:
        fail("tensor order %s, expected %s" % ([t["name"] for t in got["tensors"]], order))
    if got["metadata"] != header["__metadata__"]:
        fail("metadata %s" % got["metadata"])
    for t in got["tensors"]:
        ref = tensors[t["name"]]
        want = {"dtype": NAMES[ref.dtype], "shape": list(ref.shape), "data_offsets": offsets[t["name"]], "hex": raw(ref).hex()}
        for k, v in want.items():
            if t[k] != v:
                fail("tensor %s: %s is %s, expected %s" % (t["name"], k, t[k], v))
        if ref.dtype in FLOATS and t["f32bits"] != f32bits(ref):
            fail("tensor %s: floats() %s, PyTorch converts to %s" % (t["name"], t["f32bits"], f32bits(ref)))
    print("tricks read Python's file: %d tensors" % len(order))


def tricks_writes(binary, work):
    path = os.path.join(work, "tricks.safetensors")
    out = subprocess.run([binary, "write", path], capture_output=True, text=True)
    if out.returncode != 0:
        fail("tricks could not write: " + out.stderr)
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    text = data[8:8 + n]
    if n % 8 != 0 or text[:1] != b"{" or text.rstrip(b" ")[-1:] != b"}":
        fail("header of %d bytes: %r" % (n, text))
    header = json.loads(text)
    meta = header.pop("__metadata__")
    if meta != {"format": "pt", "source": "tricks \u2713"}:
        fail("metadata %s" % meta)
    names = ["src", "as_f16", "as_bf16", "layer1.0.bn1.num_batches_tracked", "empty"]
    if list(header) != names:
        fail("tensors %s" % list(header))
    base, at, got = 8 + n, 0, {}
    for name in names:
        info = header[name]
        b, e = info["data_offsets"]
        if b != at:
            fail("%s starts at %d, the previous tensor ended at %d" % (name, b, at))
        dtype = TORCH[info["dtype"]]
        t = torch.frombuffer(bytearray(data[base + b:base + e]), dtype=dtype) if e > b else torch.empty(0, dtype=dtype)
        got[name] = t.reshape(info["shape"])
        at = e
    if base + at != len(data):
        fail("%d bytes after the last tensor" % (len(data) - base - at))
    src = got["src"]
    if src.dtype != torch.float32 or list(src.shape) != [2, 3, 4]:
        fail("src is %s %s" % (src.dtype, list(src.shape)))
    for name, dtype, shape in (("as_f16", torch.float16, [4, 6]), ("as_bf16", torch.bfloat16, [24])):
        want = src.reshape(-1).to(dtype)
        t = got[name]
        if t.dtype != dtype or list(t.shape) != shape or raw(t) != raw(want):
            fail("%s: %s, PyTorch rounds to %s" % (name, t.reshape(-1).view(torch.int16).tolist(),
                                                   want.view(torch.int16).tolist()))
    nbt = got["layer1.0.bn1.num_batches_tracked"]
    if nbt.dtype != torch.int64 or nbt.shape != torch.Size([]) or nbt.item() != 42:
        fail("num_batches_tracked %s" % nbt)
    if list(got["empty"].shape) != [0, 5]:
        fail("empty %s" % list(got["empty"].shape))
    print("Python read tricks' file: F16 and BF16 bits equal PyTorch's rounding of %d values" % src.numel())


def refused(binary, work):
    entry = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    cases = {
        "duplicate": (b'{"w":%s,"w":%s}' % ((json.dumps(entry).encode(),) * 2), b"\0" * 4, "key 'w' appears twice"),
        "gap": (json.dumps({"w": dict(entry, data_offsets=[4, 8])}).encode(), b"\0" * 8, "belong to no tensor"),
    }
    for name, (text, data, expect) in cases.items():
        path = os.path.join(work, name + ".safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + data)
        out = subprocess.run([binary, "dump", path], capture_output=True, text=True)
        if out.returncode != 1 or path not in out.stderr or expect not in out.stderr:
            fail("%s: exit %d, stderr %r" % (name, out.returncode, out.stderr))
    print("malformed files refused: %d" % len(cases))


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    python_writes(binary, work)
    tricks_writes(binary, work)
    refused(binary, work)
    print("PASS")


if __name__ == "__main__":
    main()
