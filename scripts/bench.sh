#!/usr/bin/env bash
# Benchmarks (bench/), with the venv and PostgreSQL/Redis on loopback set up:
#   scripts/bench.sh [options]          beat at scale: cronsvc's scheduler vs stock
#                                       django-celery-beat (bench/beat_scale.py)
#   scripts/bench.sh workers [options]  worker scaling: 1, 2, 4 worker processes
#                                       (bench/worker_scale.py)
#   scripts/bench.sh cpu [options]      worker CPU per scheduled run against LangGraph's
#                                       own floor (bench/worker_cpu.py)
#   scripts/bench.sh soak [options]     fault soak (bench/fault_soak.py)
#   scripts/bench.sh api [options]      the cron API through the SDK: cronsvc (SQLite,
#                                       PostgreSQL) vs the reference LangGraph dev server
#                                       (bench/api_compare.py)
#   scripts/bench.sh import [options]   1,000,000 crons through the COPY import, by phase
#                                       (bench/import_scale.py)
#   scripts/bench.sh waiting [options]  500 open run streams + 500 joins on 1-second runs in
#                                       the production topology, /ok and crons.count probed
#                                       (bench/waiting_load.py)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
export CRONSVC_DATA_DIR=${CRONSVC_DATA_DIR:-$(mktemp -d)}
case "${1:-}" in
    workers) shift; exec .venv/bin/python bench/worker_scale.py "$@" ;;
    cpu) shift; exec .venv/bin/python bench/worker_cpu.py "$@" ;;
    soak) shift; exec .venv/bin/python bench/fault_soak.py "$@" ;;
    api) shift; exec .venv/bin/python bench/api_compare.py "$@" ;;
    import) shift; exec .venv/bin/python bench/import_scale.py "$@" ;;
    waiting) shift; exec .venv/bin/python bench/waiting_load.py "$@" ;;
    *) exec .venv/bin/python bench/beat_scale.py "$@" ;;
esac
