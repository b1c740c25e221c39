#!/usr/bin/env bash
# The benchmarks' own Kafka and PostgreSQL: scripts/services.sh run from a private root, so its state
# (.services/env, the broker, the data dir) never touches the checkout's shared .services/.
#
#   bash benchmarks/stack.sh start [DIR]   # start both; prints the env file to source
#   bash benchmarks/stack.sh stop [DIR]    # stop both, remove DIR
#   bash benchmarks/stack.sh env [DIR]     # print the env file
#
# DIR defaults to $SHADOWD_BENCH_STACK or /tmp/shadowd-bench-stack. It holds symlinks to the
# checkout's scripts/ and .cache/ (the Kafka jars are fetched once and shared).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${2:-${SHADOWD_BENCH_STACK:-/tmp/shadowd-bench-stack}}"

case "${1:-}" in
  start)
    mkdir -p "$STACK" "$ROOT/.cache"
    ln -sfn "$ROOT/scripts" "$STACK/scripts"
    ln -sfn "$ROOT/.cache" "$STACK/.cache"
    # services.sh finds its root as <its folder>/.., i.e. $STACK, through the symlink.
    bash "$STACK/scripts/services.sh" start >/dev/null
    echo "$STACK/.services/env"
    ;;
  stop)
    if [[ -f "$STACK/.services/env" ]]; then bash "$STACK/scripts/services.sh" stop; fi
    # Only what start made: the two symlinks and the state folder.
    rm -f "$STACK/scripts" "$STACK/.cache"
    rm -rf "$STACK/.services"
    rmdir "$STACK" 2>/dev/null || true
    ;;
  env)
    cat "$STACK/.services/env"
    ;;
  *)
    echo "usage: bash benchmarks/stack.sh start|stop|env [DIR]" >&2
    exit 2
    ;;
esac
