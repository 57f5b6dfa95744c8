"""The project's import rules hold (scripts/import_rules.py), and the checker
finds what it claims to find."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("import_rules", ROOT / "scripts" / "import_rules.py")
import_rules = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_rules)


def test_no_cycle_and_no_private_name_across_modules():
    edges, private = import_rules.graph()
    assert import_rules.cycles(edges) == []
    assert private == []


def test_checker_sees_imports_inside_functions_and_private_names(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "__init__.py").write_text("")
    (tmp_path / "runs" / "a.py").write_text("def f():\n    from runs.b import _hidden\n")
    (tmp_path / "runs" / "b.py").write_text("from runs import a\n_hidden = 1\n")
    for package in ("cronsvc", "crons", "threads"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    edges, private = import_rules.graph(tmp_path)
    assert import_rules.cycles(edges) == [["runs.a", "runs.b"]]
    assert private == ["runs/a.py:2 imports _hidden from runs.b"]
