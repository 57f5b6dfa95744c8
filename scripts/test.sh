#!/usr/bin/env bash
# The test command: set up, make sure PostgreSQL and Redis run, run the suite.
#   scripts/test.sh            # everything (CI)
#   scripts/test.sh -m 'not slow' -k crons   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Lint first (ruff format and check, import rules, mypy): CRONSVC_SKIP_LINT=1 skips it locally.
if [ -z "${CRONSVC_SKIP_LINT:-}" ]; then
  scripts/lint.sh
fi
scripts/services.sh
# Debian's Chromium and ChromeDriver for the admin browser test (installed when missing).
scripts/browser.sh
# The JS SDK for the JS smoke test (skipped when node is missing).
if command -v npm >/dev/null 2>&1 && [ ! -d tests/js/node_modules/@langchain/langgraph-sdk ]; then
  npm ci --prefix tests/js --no-audit --no-fund --silent
fi
# A database name of its own per run, so concurrent runs do not drop each other's.
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/cronsvc_$$}
export CELERY_BROKER_URL=${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}
export CRONSVC_DATA_DIR=${CRONSVC_DATA_DIR:-$(mktemp -d)}
unset LANGGRAPH_API_KEY LANGSMITH_API_KEY LANGCHAIN_API_KEY CRONSVC_API_KEYS
exec .venv/bin/python -m pytest "$@"
