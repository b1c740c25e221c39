#!/usr/bin/env bash
# Rewrites requirements/lock.txt: every package shadowd and all its extras need, pinned, resolved
# in a throwaway venv from pyproject.toml. Run it after changing a dependency; commit the result.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/shadowd-lock.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
extras="$(python3 - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(",".join(sorted(tomllib.load(f)["project"].get("optional-dependencies", {}))))
PY
)"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$ROOT${extras:+[$extras]}"
{
  echo "# Pinned versions for shadowd and all its extras; written by scripts/lock.sh, used as pip constraints"
  echo "# by scripts/venv.sh, CI and the Dockerfile."
  "$work/venv/bin/python" -m pip freeze --exclude-editable | grep -v -i '^shadowd[=@ ]'
} >"$ROOT/requirements/lock.txt"
echo "wrote requirements/lock.txt ($(grep -vc '^#' "$ROOT/requirements/lock.txt") packages)"
