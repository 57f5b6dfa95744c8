#!/usr/bin/env bash
# Lint: formatting, lint rules, types where contracts matter, import rules.
# Run by scripts/test.sh (and so by .ci/run) and by the pre-commit hooks.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
"$bin/ruff" format --check --quiet .
"$bin/ruff" check --quiet .
"$bin/lint-imports" --no-cache >/dev/null || "$bin/lint-imports" --no-cache
"$bin/python" scripts/import_rules.py >/dev/null || "$bin/python" scripts/import_rules.py
"$bin/mypy"
echo "lint: ruff format, ruff check, import-linter, import rules, mypy passed"
