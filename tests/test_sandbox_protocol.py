"""The literal-data wire format between the sandboxed candidate and the judge (sandbox/protocol.py)."""
from __future__ import annotations

import math
import os

import pytest

from esamp.grading.sandbox import protocol
from esamp.grading.sandbox.protocol import ProtocolError


def roundtrip(v):
    return protocol.decode(protocol.loads(protocol.dumps({"v": protocol.encode(v)}))["v"])


def test_plain_values_roundtrip_with_exact_types():
    v = [0, -1, 2 ** 63, -(2 ** 300), 1.5, -0.0, math.inf, "tab\tnew\nline \u00e9 \ud800", b"\x00\xff",
         1 - 2j, None, True, False, (1, (2,)), {3, "x"}, frozenset({(4, 5)}), {"a": 1, 2: [3], (4,): {}}, []]
    out = roundtrip(v)
    assert out == v and [type(x) for x in out] == [type(x) for x in v]
    assert math.copysign(1.0, out[5]) == -1.0 and list(out[16]) == ["a", 2, (4,)]
    assert math.isnan(roundtrip(math.nan)) and b"\n" not in protocol.dumps(protocol.encode(v))[:-1]


def test_subclasses_are_sent_as_their_base_type_and_objects_are_refused():
    class I(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    class L(list):
        def __iter__(self):
            return iter([99])

    out = roundtrip([I(3), L([1, 2])])
    assert out == [3, [1, 2]] and type(out[0]) is int and type(out[1]) is list

    class Fake:
        __class__ = property(lambda self: int)

    assert isinstance(Fake(), int)
    for bad in (object(), Fake(), iter([1]), lambda: 0, _nested(protocol.MAX_DEPTH + 1)):
        with pytest.raises(TypeError):
            protocol.encode(bad)


def _nested(depth):
    v = []
    for _ in range(depth):
        v = [v]
    return v


@pytest.mark.parametrize(
    "wire",
    ['{"v": {"x": 1}}', '{"v": {"t": [1], "s": [1]}}', '{"v": {"s": [[1]]}}', '{"v": {"d": [[[1], 2]]}}',
     '{"v": {"d": [[1]]}}', '{"v": {"i": "zz"}}', '{"v": {"b": "0"}}', '{"v": {"c": ["1", 2]}}',
     '{"v": ' + "[" * (protocol.MAX_DEPTH + 1) + "]" * (protocol.MAX_DEPTH + 1) + "}"],
)
def test_decode_refuses_anything_but_the_format(wire):
    with pytest.raises(ProtocolError):
        protocol.decode(protocol.loads(wire.encode())["v"])


@pytest.mark.parametrize("line", [b"", b"[1]", b"passed", b"\xff\xfe", b"[" * 100_000, b"1" * 5000])
def test_loads_refuses_non_objects(line):
    with pytest.raises(ProtocolError):
        protocol.loads(line)


def test_line_reader_caps_message_size():
    r, w = os.pipe()
    try:
        os.write(w, b'{"a": 1}\n' + b"x" * 5000)
        os.close(w)
        reader = protocol.LineReader(r, cap=1000)
        assert protocol.loads(reader.read_line()) == {"a": 1}
        with pytest.raises(ProtocolError, match="larger than 1000"):
            reader.read_line()
    finally:
        os.close(r)


def test_exceptions_are_rebuilt_as_builtin_types_only():
    e = protocol.rebuild_exception("ValueError", "bad")
    assert type(e) is ValueError and str(e) == "bad"
    assert type(protocol.rebuild_exception("LookupError", "")) is LookupError
    # control-flow exceptions are failures, never signals to the test's loops or handlers
    for name in ("Custom", "UnicodeDecodeError", "print", "__import__", "a.b", "StopIteration",
                 "StopAsyncIteration", "GeneratorExit", "SystemExit", "KeyboardInterrupt"):
        e = protocol.rebuild_exception(name, "msg")
        assert type(e) is Exception and str(e) == f"{name}: msg"
    with pytest.raises(ProtocolError):
        protocol.rebuild_exception(["ValueError"], "x")
