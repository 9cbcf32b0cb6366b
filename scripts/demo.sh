#!/usr/bin/env bash
# The main job on a fresh machine: Python env, then `parley demo` (it starts a local Kafka broker
# from Maven jars unless KAFKA_BOOTSTRAP_SERVERS answers). Extra arguments go to `parley demo`,
# e.g. `bash scripts/demo.sh --scale 0.2`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/parley demo "$@"
