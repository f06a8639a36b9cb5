"""Wrappers set as instance attributes on vLLM objects (the model, its sampler), and undone exactly: an attribute
vLLM set on the instance itself is put back, one that came from the class is deleted, so the class's live
method shows through again (not a bound copy kept from one run)."""
from __future__ import annotations

from typing import Any, Callable


class Patches:
    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def wrap(self, obj: Any, attr: str, new: Callable) -> Callable:
        """Set `obj.attr = new`; returns the callable it replaces (what the wrapper calls on)."""
        orig = getattr(obj, attr)
        self._undo.append((obj, attr, orig, attr in vars(obj)))
        setattr(obj, attr, new)
        return orig

    def undo(self) -> None:
        for obj, attr, orig, own in reversed(self._undo):
            if own:
                setattr(obj, attr, orig)
            else:
                delattr(obj, attr)
        self._undo.clear()
