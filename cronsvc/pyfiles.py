"""Loading a Python file named in langgraph.json (a graph, the auth object, an
embedding function) as a module, once per process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def import_file(path: Path, prefix: str) -> ModuleType:
    """The module at `path`, under a name made of `prefix` and the path (so two
    files with one stem stay apart); loaded once. ImportError when `path` is not
    a loadable Python file; a file that fails to run leaves no module behind."""
    name = f"{prefix}_{path.stem}_{abs(hash(str(path)))}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
