#!/usr/bin/env bash
# The one benchmark command (benchmarks/README.md): starts its own Kafka and PostgreSQL, runs the
# figures, prints the table and writes benchmarks/results/latest.json.
#
#   bash benchmarks/run.sh                          # the six figures (about 12 minutes on an idle machine)
#   bash benchmarks/run.sh comparator queries       # a subset
#   bash benchmarks/run.sh all                      # the six figures, the judge and the py-spy profiles
#   bash benchmarks/run.sh --quick                  # smaller N everywhere
#   bash benchmarks/run.sh --reuse-services ...     # use SHADOWD_TEST_KAFKA / SHADOWD_TEST_DATABASE_URL
#
# The services are private (benchmarks/stack.sh: scripts/services.sh run from a temporary root), so a
# run never stops or reuses the checkout's shared .services/ that the tests use; they stop at exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

reuse=0
args=()
for arg in "$@"; do
  case "$arg" in
    --reuse-services) reuse=1 ;;
    *) args+=("$arg") ;;
  esac
done

section() { printf '\n==== %s ====\n' "$*" >&2; }

section "install shadowd into the checkout's own virtual environment (.venv)"
SHADOWD_EXTRAS="${SHADOWD_EXTRAS:-bench}" source "$ROOT/scripts/venv.sh"  # bench: DeepDiff for the comparator figure
if [[ " ${args[*]:-} " == *" profile "* || " ${args[*]:-} " == *" profile0 "* || " ${args[*]:-} " == *" all "* ]] && ! command -v py-spy >/dev/null; then
  section "install py-spy (profile)"
  python -m pip install -q py-spy
fi

if ((reuse)); then
  : "${SHADOWD_TEST_KAFKA:?--reuse-services needs SHADOWD_TEST_KAFKA}"
  : "${SHADOWD_TEST_DATABASE_URL:?--reuse-services needs SHADOWD_TEST_DATABASE_URL}"
  section "using the services given: Kafka $SHADOWD_TEST_KAFKA"
else
  stack="$(mktemp -d "${TMPDIR:-/tmp}/shadowd-bench-stack.XXXXXX")"
  trap 'section "stop the benchmark services"; bash "$ROOT/benchmarks/stack.sh" stop "$stack" || true' EXIT
  section "start private Kafka and PostgreSQL ($stack)"
  env_file="$(bash "$ROOT/benchmarks/stack.sh" start "$stack")"
  # shellcheck disable=SC1090
  source "$env_file"
  echo "Kafka $SHADOWD_TEST_KAFKA_VERSION at $SHADOWD_TEST_KAFKA; PostgreSQL at 127.0.0.1:$SHADOWD_TEST_PG_PORT" >&2
fi

section "benchmarks ${args[*]:-(default set)}"
python benchmarks/bench.py "${args[@]}"
