"""Plain literal data over a pipe: the only thing that travels between the candidate and the test.

Used on both sides (the trusted judge and the untrusted child), so it imports nothing but the stdlib
and nothing from its own package: the child runs it from a copy in its working directory.

Wire format: one JSON document per line (``ensure_ascii``, so a line never contains a raw newline).
Values are JSON with tags for what JSON cannot say.  Every JSON object on the wire is a tag -- a real
dict is sent as ``{"d": [[key, value], ...]}`` -- so a decoder never has to guess:

    None, bool, str, float (inf/nan as JSON's Infinity/NaN), int below 2**63   as themselves
    list                     [...]
    tuple / set / frozenset  {"t": [...]} / {"s": [...]} / {"f": [...]}
    dict                     {"d": [[k, v], ...]}   (insertion order kept)
    big int / bytes          {"i": "<hex>"} / {"b": "<hex>"}
    complex                  {"c": [real, imag]}

:func:`decode` is the trusted direction: it builds only these exact builtin types, so no object with a
custom ``__eq__`` (or any other method) can come out of it, whatever bytes the other side sent.
"""
from __future__ import annotations

import builtins
import json
import os

MAX_DEPTH = 200  # nesting limit both ways (the old in-process harness used the same)
_BIG = 1 << 63


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


def encode(v, depth=0):
    """JSON-able form of plain builtin data.  Subclasses of the builtin types are sent as their base
    type (their overridden methods are not data); anything else raises TypeError."""
    t = type(v)  # type() cannot be faked by a __class__ property, unlike isinstance()
    if v is None or t is bool or t is str or t is float:
        return v
    if t is int:
        return v if -_BIG < v < _BIG else {"i": hex(v)}
    if depth >= MAX_DEPTH:
        raise TypeError("value is nested too deeply (or is cyclic)")
    d = depth + 1
    if issubclass(t, int):
        return encode(int.__int__(v), d)
    if issubclass(t, float):
        return float.__float__(v)
    if issubclass(t, str):
        return str.__str__(v)
    if issubclass(t, list):
        return [encode(x, d) for x in list.__iter__(v)]
    if issubclass(t, tuple):
        return {"t": [encode(x, d) for x in tuple.__iter__(v)]}
    if issubclass(t, dict):
        return {"d": [[encode(k, d), encode(x, d)] for k, x in dict.items(v)]}
    if issubclass(t, frozenset):
        return {"f": [encode(x, d) for x in frozenset.__iter__(v)]}
    if issubclass(t, set):
        return {"s": [encode(x, d) for x in set.__iter__(v)]}
    if issubclass(t, bytes):
        return {"b": bytes.hex(v)}
    if issubclass(t, complex):
        return {"c": [complex.__complex__(v).real, complex.__complex__(v).imag]}
    raise TypeError("unsupported type %r (only plain builtin data is accepted)" % t.__name__)


def decode(x, depth=0):
    """Inverse of :func:`encode` for a parsed JSON value; raises ProtocolError on anything else."""
    t = type(x)
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    if depth >= MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    d = depth + 1
    if t is list:
        return [decode(i, d) for i in x]
    if t is not dict or len(x) != 1:
        raise ProtocolError("unexpected %s in a value" % t.__name__)
    ((tag, val),) = x.items()
    try:
        if tag in ("t", "s", "f") and type(val) is list:
            items = [decode(i, d) for i in val]
            return tuple(items) if tag == "t" else set(items) if tag == "s" else frozenset(items)
        if tag == "d" and type(val) is list:
            out = {}
            for pair in val:
                if type(pair) is not list or len(pair) != 2:
                    raise ProtocolError("malformed dict item")
                out[decode(pair[0], d)] = decode(pair[1], d)
            return out
        if tag == "i" and type(val) is str:
            return int(val, 16)
        if tag == "b" and type(val) is str:
            return bytes.fromhex(val)
        if tag == "c" and type(val) is list and len(val) == 2 and all(type(p) in (int, float) for p in val):
            return complex(val[0], val[1])
    except TypeError as e:  # an unhashable key or set member
        raise ProtocolError(str(e)) from None
    except ValueError as e:  # bad hex
        raise ProtocolError(str(e)) from None
    raise ProtocolError("unknown tag %r" % (tag,))


def dumps(msg) -> bytes:
    """One message as a line of bytes (``msg`` is already JSON-able, e.g. built with :func:`encode`)."""
    return json.dumps(msg, separators=(",", ":")).encode("ascii") + b"\n"


def loads(line: bytes) -> dict:
    """Parse one message line; it must be a JSON object.  Raises ProtocolError otherwise."""
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError, MemoryError) as e:  # ValueError covers UnicodeDecodeError
        raise ProtocolError("malformed message: %s" % type(e).__name__) from None
    if type(msg) is not dict:
        raise ProtocolError("a message must be a JSON object")
    return msg


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (pipes may accept a large message in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class LineReader:
    """Reads newline-terminated messages from a file descriptor, refusing any longer than ``cap``."""

    def __init__(self, fd: int, cap: int):
        self.fd, self.cap, self.buf = fd, cap, bytearray()

    def read_line(self):
        """The next line without its newline, or None at end of file."""
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > self.cap:
                raise ProtocolError("message larger than %d bytes" % self.cap)
            start = len(self.buf)
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk


def describe_exception(exc) -> list:
    """``[type name, message]`` of an exception, as sent over the wire (the message is for people)."""
    try:
        name = type(exc).__name__
    except BaseException:  # noqa: BLE001 - a hostile metaclass; any name will do
        name = "?"
    try:
        text = str(exc)[:500]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        text = "<unprintable>"
    return [name if type(name) is str else "?", text]


# Exceptions that steer control flow rather than report an error: raised from a call, each would change
# what the *test* does -- StopIteration silently ends the `map`/generator the test iterates (so
# `assert all(map(candidate, xs))` passes), the others unwind past `except Exception`.  They come back as
# plain Exceptions: a failed call, never a signal to the test's control flow.
CONTROL_FLOW = frozenset({"StopIteration", "StopAsyncIteration", "GeneratorExit", "SystemExit",
                          "KeyboardInterrupt"})


def rebuild_exception(name, text) -> BaseException:
    """The exception the candidate's caller sees: the builtin type of that name when there is one
    (so a test's ``except ValueError`` still works), else -- and for the control-flow exceptions in
    :data:`CONTROL_FLOW` -- a plain Exception naming it."""
    if type(name) is not str or type(text) is not str:
        raise ProtocolError("malformed exception")
    cls = getattr(builtins, name, None) if name.isidentifier() and name not in CONTROL_FLOW else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(text)
        except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
            pass
    return Exception("%s: %s" % (name, text) if text else name)
