#!/usr/bin/env bash
# The README's first command: install shadowd into the checkout's own virtual environment (.venv)
# and run `shadowd demo` (nothing else needs to run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
exec python -m shadowd demo "$@"
