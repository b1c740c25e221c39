#!/usr/bin/env bash
# The one test command (README and .ci/run): installs shadowd with its test extras, starts Kafka and
# PostgreSQL unless SHADOWD_TEST_KAFKA and SHADOWD_TEST_DATABASE_URL already point at running ones,
# then runs pytest with the given arguments (default: the whole tests/ tree).
#
#   bash scripts/test.sh                       # everything
#   bash scripts/test.sh tests/unit -x         # any pytest arguments
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() { printf '\n==== %s ====\n' "$*"; }

section "install shadowd[test] into $(python3 -c 'import sys; print(sys.executable)')"
pip_install=(python3 -m pip install -q -e '.[test]')
pip_errors="$(mktemp)"
if ! "${pip_install[@]}" 2>"$pip_errors"; then
  # A Debian-managed interpreter (PEP 668) needs the explicit opt-in; anything else is a real error.
  if grep -q externally-managed "$pip_errors"; then
    "${pip_install[@]}" --break-system-packages
  else
    cat "$pip_errors" >&2
    rm -f "$pip_errors"
    exit 1
  fi
fi
rm -f "$pip_errors"

if [[ -n "${SHADOWD_TEST_KAFKA:-}" && -n "${SHADOWD_TEST_DATABASE_URL:-}" ]]; then
  section "using the services already given: Kafka $SHADOWD_TEST_KAFKA, PostgreSQL from SHADOWD_TEST_DATABASE_URL"
else
  section "start Kafka and PostgreSQL (scripts/services.sh)"
  # Installs java, maven and postgresql when missing, fetches the Kafka jars on first use.
  trap 'section "stop Kafka and PostgreSQL"; bash scripts/services.sh stop || true' EXIT
  bash scripts/services.sh start >/dev/null
  # shellcheck disable=SC1091
  source .services/env
  echo "Kafka $SHADOWD_TEST_KAFKA_VERSION at $SHADOWD_TEST_KAFKA; PostgreSQL at 127.0.0.1:$SHADOWD_TEST_PG_PORT"
fi

section "pytest ${*:-tests}"
status=0
python3 -m pytest -q "$@" || status=$?
if ((status == 5)); then
  # pytest's 5 means it collected nothing: a test command that tests nothing has failed.
  echo "scripts/test.sh: pytest collected no tests (exit 5); treating that as a failure" >&2
  status=1
fi
section "pytest exit code $status"
exit "$status"
