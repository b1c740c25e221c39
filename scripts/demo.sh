#!/usr/bin/env bash
# The README's first command: install shadowd and run `shadowd demo` (nothing else needs to run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! python3 -m pip install -q -e . 2>/tmp/shadowd-pip.err; then
  if grep -q externally-managed /tmp/shadowd-pip.err; then
    python3 -m pip install -q -e . --break-system-packages
  else
    cat /tmp/shadowd-pip.err >&2
    exit 1
  fi
fi
exec python3 -m shadowd demo "$@"
