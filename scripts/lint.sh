#!/usr/bin/env bash
# Lint the checkout from the project's Python env: ruff (rules in pyproject.toml, [tool.ruff]),
# then mypy (every package, strict on the pure core: [tool.mypy]). Both always run, so one pass
# shows every finding; exits non-zero if either finds anything. Arguments go to ruff, e.g.
# `bash scripts/lint.sh --fix` for its safe fixes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
status=0
.venv/bin/ruff check "$@" . || status=1
.venv/bin/mypy || status=1
exit "$status"
