#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs into fuzz/corpus/<name>/ (small files; rerun to regenerate them)."""
import gzip, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(name, file, data):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, file), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


f32 = lambda *v: struct.pack("<%df" % len(v), *v)
put("safetensors", "f32", safetensors([("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6))]))
put("safetensors", "mixed", safetensors(
    [("a", "F64", [2], struct.pack("<2d", 0.5, -1)), ("b", "I64", [1, 1], struct.pack("<q", 7)),
     ("empty", "F32", [0, 4], b"")], {"config": json.dumps({"variant": "kv", "d_model": 16}), "step": "3"}))
put("safetensors", "scalar", safetensors([("s", "F32", [], f32(3.5))]))
put("safetensors", "nothing", safetensors([]))
put("safetensors", "truncated", safetensors([("w", "F32", [4], f32(1, 2, 3, 4))])[:-5])

image = bytes((i * 7) % 256 for i in range(28 * 28))
images = struct.pack(">I3I", 0x803, 1, 28, 28) + image
labels = struct.pack(">II", 0x801, 1) + bytes([3])
put("idx", "images", images)
put("idx", "labels", labels)
put("idx", "labels.gz", gzip.compress(labels, mtime=0))
put("idx", "images.gz", gzip.compress(images, mtime=0))
put("idx", "vector", struct.pack(">II", 0x801, 5) + bytes(range(5)))

put("corpus", "english", "\x05First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 3)
put("corpus", "binary", bytes([0x41]) + bytes(range(256)) + bytes(range(255, -1, -1)))
put("corpus", "utf8", "\x10caf\u00e9 na\u00efve \u2014 \u65e5\u672c\u8a9e, 0-bytes \x00\x00 end.\n" * 4)
put("corpus", "short", "\x1fab")

for i, name in enumerate(["qkv", "kv+", "(Q=K=V)+", "Q-GQA-4", "gqa:2", "kv-mqa", "MQA", "paper-synthetic",
                          "paper-lm", "all", "qkv,kv,single+", "Q=K-V", " single "]):
    put("variant", "v%02d" % i, name)
