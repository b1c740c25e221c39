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

section "install shadowd[test] into the checkout's own virtual environment (.venv)"
SHADOWD_EXTRAS=test source scripts/venv.sh
echo "python: $(command -v python)"

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
python -m pytest -q "$@" || status=$?
if ((status == 5)); then
  # pytest's 5 means it collected nothing: a test command that tests nothing has failed.
  echo "scripts/test.sh: pytest collected no tests (exit 5); treating that as a failure" >&2
  status=1
fi
section "pytest exit code $status"
exit "$status"
