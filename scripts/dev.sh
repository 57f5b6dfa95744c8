#!/usr/bin/env bash
# The run command: set up and start API + worker + beat on the embedded default
# (SQLite and kombu's filesystem broker in ./data), serving http://127.0.0.1:8123.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python manage.py dev "$@"
