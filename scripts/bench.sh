#!/usr/bin/env bash
# Beat at scale: cronsvc's scheduler vs stock django-celery-beat (bench/beat_scale.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
export CRONSVC_DATA_DIR=${CRONSVC_DATA_DIR:-$(mktemp -d)}
exec .venv/bin/python bench/beat_scale.py "$@"
