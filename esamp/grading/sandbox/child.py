"""The candidate's side of a check: runs the untrusted program, then answers the judge's calls.

Runs as ``python -I -S .harness/child.py`` (a copy of this file next to ``protocol.py``) in the
sandbox's working directory, under the unprivileged sandbox uid, with

    fd 3  requests from the judge (read end)      fd 4  answers to the judge (write end)

and nothing else: not the result pipe to the parent, not the test.  Nothing in this process is
trusted -- the program can rewrite any of it -- and nothing needs to be: all the judge takes from
here is one literal value (or exception name) per call.  The code below only has to make honest
programs work, and to keep working when a program tampers with ``sys.modules["__main__"]`` (its
state lives in ``main``'s locals), so that such a program still gets an honest AssertionError.

Messages (one JSON line each, see protocol.py):

    test mode    -> {"ready": true} | {"load_error": [type, msg]}
                 <- {"id": n, "args": [...], "kwargs": {"d": ...}}      (kwargs optional)
                 -> {"id": n, "ret": value} | {"id": n, "raise": [type, msg]}
                 end of file on fd 3: exit 0
    script mode  -> {"done": true} | {"error": [type, msg]}
"""
import os
import sys

try:
    from . import protocol
except ImportError:  # run as a script: -I keeps this file's directory off sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import protocol

REQUESTS, ANSWERS = 3, 4


def main():
    import builtins
    import json
    import traceback

    exit_, write_all, dumps = os._exit, protocol.write_all, protocol.dumps
    encode, decode, describe = protocol.encode, protocol.decode, protocol.describe_exception
    stdout, stderr = sys.stdout, sys.stderr
    BaseException_ = BaseException

    def flush():
        for stream in (stdout, stderr):
            try:
                stream.flush()
            except BaseException_:
                pass

    def send(msg, fallback=None):
        try:
            data = dumps(msg)
        except BaseException_:  # e.g. a value JSON cannot nest that deep
            data = dumps(fallback or {"error": ["TypeError", "unserialisable message"]})
        try:
            write_all(ANSWERS, data)
        except BaseException_:
            pass

    def give_up(key, exc, status):
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=stderr)
        except BaseException_:
            pass
        flush()
        send({key: describe(exc)})
        exit_(status)

    with open("spec.json") as f:
        spec = json.load(f)
    with open("program.py", encoding="utf-8") as f:
        program = f.read()

    if spec["mode"] == "script":
        try:
            exec(compile(program, "program.py", "exec"), {"__name__": "__main__", "__builtins__": builtins})
        except BaseException_ as e:
            give_up("error", e, 1)
        flush()
        send({"done": True})
        exit_(0)

    entry = spec["entry_point"]
    ns = {"__name__": "__candidate__", "__builtins__": builtins}  # `if __name__ == "__main__"` stays off
    try:
        exec(compile(program, "program.py", "exec"), ns)
        if entry not in ns:
            raise NameError("the code does not define %r" % entry)
        fn = ns[entry]
    except BaseException_ as e:
        give_up("load_error", e, 1)
    send({"ready": True})

    reader = protocol.LineReader(REQUESTS, spec["cap"])
    while True:
        try:
            line = reader.read_line()
        except BaseException_:
            line = None
        if line is None:  # the judge hung up: the check is over
            flush()
            exit_(0)
        try:
            request = json.loads(line)
            n = request["id"]
            args = decode(request["args"])
            kwargs = decode(request["kwargs"]) if "kwargs" in request else {}
        except BaseException_ as e:
            give_up("error", e, 2)  # cannot happen with the real judge
        try:
            answer = {"id": n, "ret": encode(fn(*args, **kwargs))}
        except BaseException_ as e:  # SystemExit and KeyboardInterrupt from the candidate too
            answer = {"id": n, "raise": describe(e)}
        send(answer, {"id": n, "raise": ["TypeError", "the result could not be serialised"]})


if __name__ == "__main__":
    main()
