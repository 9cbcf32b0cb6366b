#!/usr/bin/env bash
# Create (or reuse) the virtualenv with every Python dependency, and install Parley in it.
# The venv lives in the cache, keyed by pyproject.toml's hash and this checkout's path (Parley
# is installed editable: two checkouts sharing one venv would import each other's code), so a
# rerun reuses it; pip's own wheel cache makes one for a new clone fast.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PARLEY_CACHE_DIR:-$HOME/.cache/parley}"
PY="${PYTHON:-python3}"
key=$( (sha256sum pyproject.toml; pwd -P) | sha256sum | cut -c1-12)
venv="$CACHE/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  mkdir -p "$CACHE"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip wheel
  "$venv/bin/pip" install -q -e ".[test]"
  touch "$venv/.complete"
else
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e . >/dev/null
fi
ln -sfn "$venv" .venv
echo "python env: $venv (linked as .venv)"
