"""Read a frozen TensorFlow ``GraphDef`` (``.pb``) without TensorFlow.

A minimal protobuf wire-format decoder for the few messages a frozen inference graph needs:
``GraphDef.node`` -> ``NodeDef`` (name, op, inputs, attrs) -> ``AttrValue`` -> ``TensorProto``.
Only ``Const`` tensors are turned into numpy arrays; every other attribute is kept as raw
bytes/ints so graphs can still be inspected. Nothing is executed: a ``.pb`` file is plain data.

Field numbers are those of ``tensorflow/core/framework/{graph,node_def,attr_value,tensor,
tensor_shape,types}.proto``.
"""
from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

__all__ = ["GraphDefError", "NodeDef", "read_graphdef", "graph_constants"]

# tensorflow DataType enum -> numpy dtype (the numeric types a frozen graph stores)
_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}
# TensorProto field holding the repeated values for each dtype (when tensor_content is empty)
_VALUE_FIELD = {1: 5, 2: 6, 3: 7, 4: 7, 5: 7, 6: 7, 17: 7, 9: 10, 10: 11, 19: 13, 22: 16, 23: 17}


class GraphDefError(ValueError):
    """The file is not a GraphDef this reader understands (the message says where it failed)."""


@dataclasses.dataclass
class NodeDef:
    """One graph node: ``name``, ``op``, ``inputs`` and ``attr`` {name: decoded value}.

    ``attr["value"]`` of a ``Const`` node is a numpy array; ``dtype``/``T`` attrs are the
    TensorFlow enum ints; other attrs are raw field values (int, float, bytes or lists of them).
    """

    name: str
    op: str
    inputs: list[str]
    attr: dict


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphDefError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise GraphDefError("varint longer than 10 bytes")


def _fields(buf):
    """Yield ``(field_number, wire_type, value)``; length-delimited values are memoryviews."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise GraphDefError(f"field {field}: length {n} runs past the end of its message")
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise GraphDefError(f"field {field}: unsupported wire type {wire}")
        yield field, wire, value


def _packed_varints(buf) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = _varint(buf, pos)
        out.append(v)
    return out


def _shape(buf) -> tuple[int, ...]:
    dims = []
    for field, _, value in _fields(buf):
        if field == 2:  # Dim
            size = 0
            for f, _, v in _fields(value):
                if f == 1:
                    size = v - (1 << 64) if v >= 1 << 63 else v
            dims.append(size)
        elif field == 3 and value:
            raise GraphDefError("tensor shape of unknown rank")
    return tuple(dims)


def _tensor(buf) -> np.ndarray:
    dtype_enum, shape, content, values = 0, (), None, []
    for field, wire, value in _fields(buf):
        if field == 1:
            dtype_enum = value
        elif field == 2:
            shape = _shape(value)
        elif field == 4:
            content = bytes(value)
        else:
            values.append((field, wire, value))
    if dtype_enum not in _DTYPES:
        raise GraphDefError(f"tensor dtype enum {dtype_enum} is not supported")
    dtype = np.dtype(_DTYPES[dtype_enum]).newbyteorder("<")
    count = int(np.prod(shape, dtype=np.int64))
    if content is not None:
        arr = np.frombuffer(content, dtype=dtype)
    else:
        field_no = _VALUE_FIELD[dtype_enum]
        items: list = []
        for field, wire, value in values:
            if field != field_no:
                continue
            if dtype_enum in (1, 2) and wire == 2:  # packed float/double
                items.extend(np.frombuffer(value, dtype=dtype).tolist())
            elif dtype_enum == 1:
                items.append(struct.unpack("<f", value)[0])
            elif dtype_enum == 2:
                items.append(struct.unpack("<d", value)[0])
            elif wire == 2:  # packed varints
                items.extend(_packed_varints(value))
            else:
                items.append(value)
        if dtype_enum == 19:  # half_val stores the float16 bit pattern in an int32
            arr = np.asarray(items, np.uint16).view(np.float16)
        elif dtype_enum in (3, 9, 5, 6):  # two's-complement varints
            arr = np.asarray([v - (1 << 64) if v >= 1 << 63 else v for v in items], np.int64).astype(dtype)
        else:
            arr = np.asarray(items).astype(dtype)
        if arr.size == 1 and count > 1:  # TensorFlow repeats a single stored value to fill the shape
            arr = np.full(count, arr[0], dtype)
    if arr.size != count:
        raise GraphDefError(f"tensor holds {arr.size} values but its shape {shape} needs {count}")
    return arr.astype(dtype.newbyteorder("=")).reshape(shape)


def _attr_value(buf):
    out = None
    for field, wire, value in _fields(buf):
        if field == 8:  # tensor
            return _tensor(value)
        if field == 7:  # shape
            return _shape(value)
        if field == 4:  # f
            return struct.unpack("<f", value)[0]
        if field == 5:  # b
            return bool(value)
        if field in (3, 6):  # i, type
            return value
        out = bytes(value) if wire == 2 else value
    return out


def _node(buf) -> NodeDef:
    name, op, inputs, attr = "", "", [], {}
    for field, _, value in _fields(buf):
        if field == 1:
            name = bytes(value).decode()
        elif field == 2:
            op = bytes(value).decode()
        elif field == 3:
            inputs.append(bytes(value).decode())
        elif field == 5:  # map<string, AttrValue> entry
            key, val = "", None
            for f, _, v in _fields(value):
                if f == 1:
                    key = bytes(v).decode()
                elif f == 2:
                    val = v
            if val is not None:
                try:
                    attr[key] = _attr_value(val)
                except GraphDefError as e:
                    raise GraphDefError(f"node {name!r} attr {key!r}: {e}") from None
    return NodeDef(name, op, inputs, attr)


def read_graphdef(path: str | os.PathLike) -> list[NodeDef]:
    """Every node of the frozen GraphDef at ``path``, in file order (Const values as numpy)."""
    with open(os.fspath(path), "rb") as f:
        data = memoryview(f.read())
    nodes = []
    try:
        for field, wire, value in _fields(data):
            if field == 1 and wire == 2:
                nodes.append(_node(value))
    except GraphDefError as e:
        raise GraphDefError(f"{os.fspath(path)}: not a readable GraphDef ({e})") from None
    if not nodes:
        raise GraphDefError(f"{os.fspath(path)}: no nodes found; is it a GraphDef (.pb)?")
    return nodes


def graph_constants(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{node name: array}`` for every ``Const`` node of the GraphDef at ``path``."""
    return {n.name: n.attr["value"] for n in read_graphdef(path) if n.op == "Const" and "value" in n.attr}
