#!/usr/bin/env bash
# The whole test suite on a fresh machine: Python env, a real Kafka broker (Maven jars, no
# Docker needed; or KAFKA_BOOTSTRAP_SERVERS if you have one), a Schema Registry when the registry
# tests ask for one, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
started=""
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if ! .venv/bin/parley kafka status >/dev/null 2>&1; then
    .venv/bin/parley kafka up --fresh  # our own throwaway broker: no leftovers from earlier runs
    started=1
  fi
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${PARLEY_BROKER_PORT:-9092}"
fi
# The registry tests start a private Schema Registry themselves (tests/schema_registry.py: Apicurio
# from Maven Central, cached; a few seconds once cached) unless SCHEMA_REGISTRY_URL names one, and
# stop it when they end; CI=true fails them if it cannot start.
trap '[ -n "$started" ] && .venv/bin/parley kafka down || true' EXIT
.venv/bin/python -m pytest "$@"
