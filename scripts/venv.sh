#!/usr/bin/env bash
# Sourced by the project's scripts: creates (once) and activates the checkout's own virtual
# environment in .venv, and installs shadowd into it, editable, with the pinned versions of
# requirements/lock.txt. The system interpreter is only used to create the venv; nothing is
# installed into it, so two checkouts on one machine never overwrite each other.
#
#   source scripts/venv.sh            # shadowd only
#   SHADOWD_EXTRAS=test source scripts/venv.sh
set -euo pipefail

_shadowd_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_shadowd_venv="${SHADOWD_VENV:-$_shadowd_root/.venv}"
_shadowd_extras="${SHADOWD_EXTRAS:-}"
_shadowd_spec="$_shadowd_root"
[[ -n "$_shadowd_extras" ]] && _shadowd_spec="$_shadowd_root[$_shadowd_extras]"

if [[ ! -x "$_shadowd_venv/bin/python" ]]; then
  printf '[venv] creating %s\n' "$_shadowd_venv" >&2
  base_python="${SHADOWD_BASE_PYTHON:-python3}"
  if ! "$base_python" -m venv "$_shadowd_venv" 2>/dev/null; then
    # Debian's python3 ships venv in a separate package.
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv </dev/null
    fi
    "$base_python" -m venv "$_shadowd_venv"
  fi
fi

# Reinstall only when the project's metadata or the lock changed since the last install.
_shadowd_stamp="$_shadowd_venv/.shadowd-installed"
_shadowd_want="$(cat "$_shadowd_root/pyproject.toml" "$_shadowd_root/requirements/lock.txt" | cksum | cut -d' ' -f1):$_shadowd_extras:$_shadowd_root"
if [[ ! -f "$_shadowd_stamp" || "$(cat "$_shadowd_stamp")" != "$_shadowd_want" ]]; then
  printf '[venv] installing shadowd%s into %s\n' "${_shadowd_extras:+[$_shadowd_extras]}" "$_shadowd_venv" >&2
  "$_shadowd_venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$_shadowd_venv/bin/python" -m pip install -q --disable-pip-version-check \
    -c "$_shadowd_root/requirements/lock.txt" -e "$_shadowd_spec"
  printf '%s' "$_shadowd_want" >"$_shadowd_stamp"
fi

export VIRTUAL_ENV="$_shadowd_venv"
export PATH="$_shadowd_venv/bin:$PATH"
hash -r
