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


def test_the_sdk_helper_imports_only_the_sdk():
    assert import_rules.client_imports() == []


def test_checker_sees_a_server_import_in_the_sdk_helper(tmp_path):
    (tmp_path / "cronsvc_client").mkdir()
    (tmp_path / "cronsvc_client" / "__init__.py").write_text(
        "from __future__ import annotations\nimport json\nimport httpx\n"
        "from langgraph_sdk.schema import Run\n"
        "def f():\n    from django.conf import settings\n    import crons.models\n"
    )
    assert import_rules.client_imports(tmp_path) == [
        "cronsvc_client/__init__.py:6 imports django.conf",
        "cronsvc_client/__init__.py:7 imports crons.models",
    ]
