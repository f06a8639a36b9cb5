"""Where benchmark files come from: an explicit path, `$ESAMP_DATA_DIR`, a PyPI data package, or the hub.

Each source is tried in order and a missing source gives one clear message listing every place looked."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Callable


class DataNotFound(FileNotFoundError):
    pass


def open_text(path: str | Path):
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open_text(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def data_dir() -> Path | None:
    d = os.environ.get("ESAMP_DATA_DIR")
    return Path(d) if d else None


def package_file(package: str, relpath: str) -> Path | None:
    """A data file inside an installed package, found WITHOUT importing the package (some data packages
    have heavy or broken imports)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(spec.submodule_search_locations[0]) / relpath
    return p if p.exists() else None


def explicit_file(path: str | None, reader: Callable[[Path], Any]) -> Callable[[], Any]:
    """A source for `task.data_path`: None when unset, an error (reported by `resolve`) when missing."""
    def load():
        if not path:
            return None
        if not Path(path).exists():  # an explicit path never falls back silently to another source
            raise DataNotFound(f"task.data_path={path!r} does not exist")
        return reader(Path(path))
    return load


def env_file(names: list[str], reader: Callable[[Path], Any]) -> Callable[[], Any]:
    """A source for the first of `names` present in $ESAMP_DATA_DIR."""
    def load():
        d = data_dir()
        for name in names:
            if d and (d / name).exists():
                return reader(d / name)
        return None
    return load


def resolve(task: str, sources: list[tuple[str, Callable[[], Any]]]) -> tuple[str, Any]:
    """Try each (description, loader) in order; a loader returns the data or None when its source is absent.
    Raises DataNotFound naming every source tried, or at once when a source the user named explicitly
    (task.data_path) is missing."""
    tried = []
    for desc, loader in sources:
        try:
            data = loader()
        except DataNotFound:
            raise
        except Exception as err:  # e.g. a hub dataset that cannot be reached offline
            tried.append(f"{desc} ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
            continue
        if data is not None:
            return desc, data
        tried.append(f"{desc} (absent)")
    raise DataNotFound(f"no data for task {task!r}; tried, in order: " + "; ".join(tried))


def select_rows(rows: list[dict], subset: dict | None, limit: int | None) -> list[dict]:
    """`subset`: {"level": [1, 2], "subject": ["Algebra"]} keeps rows matching every given key.
    {"ids_file": path} keeps the rows whose id is listed in that file (`python -m esamp.cli.select_problems`
    writes one, committed with its experiment); see `read_ids_file`."""
    subset = dict(subset or {})
    if subset.get("ids_file"):
        field, ids = read_ids_file(subset.pop("ids_file"), subset.pop("id_field", None))
        have = {str(r.get(field)) for r in rows}
        missing = [i for i in ids if i not in have]
        if missing:  # a silently smaller experiment would not be the committed one
            raise ValueError(f"{len(missing)} of {len(ids)} ids in the ids file are not in this data "
                             f"(field {field!r}), e.g. {missing[:3]}: another data source or version?")
        subset[field] = ids
    subset.pop("id_field", None)
    for key, allowed in subset.items():
        if isinstance(allowed, (str, int)):
            allowed = [allowed]
        allowed = {str(a) for a in allowed}
        rows = [r for r in rows if str(r.get(key)) in allowed]
    return rows[:limit] if limit is not None else rows


def read_ids_file(path: str | Path, id_field: str | None = None) -> tuple[str, list[str]]:
    """(field, ids) from a JSON file: {"id_field": "unique_id", "ids": [...]} (as select_problems.py
    writes), or a bare list of ids (field `id_field`, default "unique_id"). A relative path is taken from
    the working directory, else from the repository root (run.py keeps the working directory)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists():
        p = Path(__file__).resolve().parents[2] / p
    if not p.exists():
        raise DataNotFound(f"task.subset.ids_file={str(path)!r} does not exist")
    data = json.loads(p.read_text())
    if isinstance(data, dict):
        return id_field or data.get("id_field") or "unique_id", [str(i) for i in data["ids"]]
    return id_field or "unique_id", [str(i) for i in data]
