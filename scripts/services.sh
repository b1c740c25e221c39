#!/usr/bin/env bash
# Starts and stops the real services the integration tests talk to: a single-node Apache Kafka
# broker (KRaft, jars from Maven Central) and a throwaway PostgreSQL server, both on loopback.
# The broker listens three ways (PLAINTEXT, SASL_PLAINTEXT with PLAIN, SSL with client
# certificates) and PostgreSQL accepts TLS, all with certificates made by openssl for this run only.
#
#   bash scripts/services.sh start   # (re)start both, write and print .services/env
#   bash scripts/services.sh stop    # stop both, remove their data
#   bash scripts/services.sh env     # print .services/env
#   bash scripts/services.sh deps    # install java, maven, postgresql, chromium if missing; fetch the Kafka jars
#
# Knobs: SHADOWD_KAFKA_VERSION (default below), SHADOWD_SERVICES_TIMEOUT (seconds per service, 120).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION="${SHADOWD_KAFKA_VERSION:-4.4.0}"
KAFKA_POM="$ROOT/scripts/kafka/pom.xml"
KAFKA_LOG4J="$ROOT/scripts/kafka/log4j2.xml"
KAFKA_LIBS="$ROOT/.cache/kafka-$KAFKA_VERSION/libs"
STATE_DIR="$ROOT/.services"
ENV_FILE="$STATE_DIR/env"
TIMEOUT="${SHADOWD_SERVICES_TIMEOUT:-120}"
PG_DB=shadowd
PG_ROLE=shadowd
PG_PASSWORD=shadowd
KAFKA_SASL_USER=shadowd

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@"
  else die "need root to run: $*"
  fi
}

apt_install() {
  log "installing with apt: $*"
  # One update per run: a fresh machine has no package lists at all.
  if [[ -z "${_APT_UPDATED:-}" ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

# Newest installed PostgreSQL server binaries, preferring 15 (the version production runs).
pg_bin_dir() {
  if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
    echo /usr/lib/postgresql/15/bin
    return
  fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$dir" && -x "$dir/initdb" ]]; then echo "$dir"; fi
}

ensure_tools() {
  local missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  [[ -n "$(pg_bin_dir)" ]] || missing+=(postgresql)
  # Debian's Chromium, for the headless-browser test of the HTML pages (tests/integration/test_browser.py).
  command -v chromium >/dev/null || missing+=(chromium)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  [[ -n "$(pg_bin_dir)" ]] || die "no PostgreSQL initdb under /usr/lib/postgresql/*/bin"
}

# Resolves the broker jars once per version; a half-finished download never counts as present.
fetch_kafka() {
  if [[ -f "$KAFKA_LIBS/.complete" ]]; then return; fi
  log "fetching Apache Kafka $KAFKA_VERSION jars into ${KAFKA_LIBS#"$ROOT"/} (first run only)"
  local tmp="$KAFKA_LIBS.tmp.$$" mvn_log="$KAFKA_LIBS.tmp.$$.log"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Maven's own output (stray colour codes even with -q) is shown only when it fails.
  if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" </dev/null >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -rf "$tmp" "$mvn_log"
    die "maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
  fi
  rm -f "$mvn_log"
  touch "$tmp/.complete"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
}

# Prints N distinct free loopback ports; all are held open together so none repeats.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

random_secret() {
  python3 -c 'import secrets; print(secrets.token_hex(16))'
}

# True when PID is alive and its command line contains PATTERN (guards against recycled pids).
pid_matches() {
  local pid="$1" pattern="$2"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

# PostgreSQL refuses to run as root, so root runs it as the unprivileged `postgres` OS user.
pg_os_user() {
  if [[ $EUID -ne 0 ]]; then
    id -un
    return
  fi
  if ! id -u postgres >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
  fi
  echo postgres
}

as_pg() {
  local user="$1"
  shift
  if [[ $EUID -eq 0 ]]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

stop_services() {
  if [[ ! -f "$ENV_FILE" ]]; then
    log "nothing to stop (no ${ENV_FILE#"$ROOT"/})"
    return
  fi
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  local pid="${SHADOWD_TEST_KAFKA_PID:-}"
  if pid_matches "$pid" kafka.Kafka; then
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      pid_matches "$pid" kafka.Kafka || break
      sleep 0.2
    done
    if pid_matches "$pid" kafka.Kafka; then
      log "Kafka ignored SIGTERM for 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  local pgdata="${SHADOWD_TEST_PG_DATA:-}"
  if [[ -n "$pgdata" && -f "$pgdata/postmaster.pid" ]]; then
    log "stopping PostgreSQL ($pgdata)"
    if ! as_pg "${SHADOWD_TEST_PG_OS_USER:-postgres}" "$SHADOWD_TEST_PG_BIN/pg_ctl" stop -D "$pgdata" \
        -m fast -w -t 60 >/dev/null; then
      # SIGINT is PostgreSQL's own "fast shutdown"; the pid file names the postmaster.
      local pg_pid
      pg_pid="$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null || true)"
      if pid_matches "$pg_pid" postgres; then
        log "pg_ctl stop failed; sending SIGINT to the postmaster (pid $pg_pid)"
        kill -INT "$pg_pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
          pid_matches "$pg_pid" postgres || break
          sleep 0.2
        done
      fi
    fi
  fi
  local tmp="${SHADOWD_TEST_SERVICES_TMP:-}"
  if [[ -n "$tmp" && -d "$tmp" && "$tmp" == */shadowd-services.* ]]; then rm -rf "$tmp"; fi
  rm -f "$ENV_FILE"
}

# A throwaway CA, a server certificate for 127.0.0.1/localhost (Kafka's SSL listener and
# PostgreSQL) and a client certificate whose key is encrypted (Kafka's SSL listener asks for it).
make_tls() {
  local dir="$1"
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=shadowd test CA" \
      -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=shadowd" -keyout client-plain.key -out client.csr
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile client.ext -out client.crt
    openssl pkey -in client-plain.key -aes256 -passout "pass:$TLS_CLIENT_KEY_PASSWORD" -out client.key
    rm -f client-plain.key ./*.csr ./*.ext
    # The broker reads a PKCS12 keystore and truststore; keytool makes the truststore.
    openssl pkcs12 -export -in server.crt -inkey server.key -certfile ca.crt -name broker \
      -passout "pass:$TLS_STORE_PASSWORD" -out broker.p12
    keytool -importcert -noprompt -alias ca -file ca.crt -storetype PKCS12 \
      -keystore truststore.p12 -storepass "$TLS_STORE_PASSWORD"
  ) >"$dir/openssl.out" 2>&1 || { cat "$dir/openssl.out" >&2; die "making the test certificates failed"; }
}

start_kafka() {
  local tmp="$1" port="$2" controller_port="$3" sasl_port="$4" ssl_port="$5" tls="$tmp/tls"
  local logs="$STATE_DIR/kafka" data="$tmp/kafka-data" props="$tmp/kafka-server.properties"
  rm -rf "$logs"
  mkdir -p "$logs" "$data"
  cat >"$props" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SASL_PLAINTEXT://127.0.0.1:$sasl_port,SSL://127.0.0.1:$ssl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SASL_PLAINTEXT://127.0.0.1:$sasl_port,SSL://127.0.0.1:$ssl_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.ssl.ssl.keystore.type=PKCS12
listener.name.ssl.ssl.keystore.location=$tls/broker.p12
listener.name.ssl.ssl.keystore.password=$TLS_STORE_PASSWORD
listener.name.ssl.ssl.truststore.type=PKCS12
listener.name.ssl.ssl.truststore.location=$tls/truststore.p12
listener.name.ssl.ssl.truststore.password=$TLS_STORE_PASSWORD
listener.name.ssl.ssl.client.auth=required
log.dirs=$data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.flush.interval.messages=1000000
EOF
  cp "$props" "$logs/server.properties"
  local java_opts=(-Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$logs")
  local cluster_id
  cluster_id="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  # --standalone makes this node the single voter of a dynamic KRaft quorum (Kafka >= 3.9).
  if ! java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format --standalone \
      -t "$cluster_id" -c "$props" >"$logs/storage-format.out" 2>&1; then
    cat "$logs/storage-format.out" >&2
    die "kafka storage format failed"
  fi
  log "starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:$port (controller $controller_port, SASL $sasl_port, SSL $ssl_port)"
  # setsid + nohup: the broker outlives this script and the terminal it was started from.
  setsid nohup java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$props" \
    >"$logs/kafka.out" 2>&1 </dev/null &
  KAFKA_PID=$!
  echo "$KAFKA_PID" >"$logs/kafka.pid"
}

# A real metadata round trip through aiokafka; without aiokafka, the broker's own "started" line.
kafka_answers() {
  local bootstrap="$1" logs="$STATE_DIR/kafka"
  if python3 -c 'import aiokafka' 2>/dev/null; then
    python3 - "$bootstrap" <<'EOF' 2>/dev/null
import asyncio, sys
from aiokafka import AIOKafkaClient

async def main() -> None:
    client = AIOKafkaClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        if not metadata.brokers():
            raise SystemExit(1)
    finally:
        await client.close()

asyncio.run(main())
EOF
  else
    grep -q "Kafka Server started" "$logs/server.log" 2>/dev/null
  fi
}

wait_for_kafka() {
  local bootstrap="$1" deadline=$((SECONDS + TIMEOUT))
  until kafka_answers "$bootstrap"; do
    if ! pid_matches "$KAFKA_PID" kafka.Kafka; then
      tail -n 40 "$STATE_DIR/kafka/kafka.out" "$STATE_DIR/kafka/server.log" >&2 2>/dev/null || true
      die "Kafka exited during startup (logs in .services/kafka/)"
    fi
    if ((SECONDS > deadline)); then
      tail -n 40 "$STATE_DIR/kafka/server.log" >&2 2>/dev/null || true
      die "Kafka did not answer a metadata request within ${TIMEOUT}s"
    fi
    sleep 0.5
  done
}

start_postgres() {
  local tmp="$1" port="$2" os_user="$3" bin="$4"
  local dir="$tmp/pg" data="$tmp/pg/data" socket="$tmp/pg/socket"
  mkdir -p "$socket"
  # PostgreSQL insists that its key belongs to it and nobody else can read it.
  cp "$tmp/tls/server.crt" "$tmp/tls/server.key" "$dir/"
  chmod 600 "$dir/server.key"
  chown -R "$os_user:" "$dir"
  as_pg "$os_user" "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$dir/initdb.out" 2>&1 || { cat "$dir/initdb.out" >&2; die "initdb failed"; }
  # Settings live in the data dir, so a plain `pg_ctl start -D DATA` (the outage tests) restores them.
  cat >>"$data/postgresql.conf" <<EOF

# scripts/services.sh: a throwaway test server on loopback.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$socket'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
# TLS is offered, not required: the tests connect both ways and check which one they got.
ssl = on
ssl_cert_file = '$dir/server.crt'
ssl_key_file = '$dir/server.key'
EOF
  log "starting PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
  as_pg "$os_user" "$bin/pg_ctl" start -D "$data" -l "$dir/server.log" -w -t "$TIMEOUT" >/dev/null \
    || { tail -n 40 "$dir/server.log" >&2; die "PostgreSQL did not start"; }
  local deadline=$((SECONDS + TIMEOUT))
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; do
    ((SECONDS < deadline)) || die "PostgreSQL did not answer pg_isready within ${TIMEOUT}s"
    sleep 0.2
  done
  as_pg "$os_user" "$bin/psql" -q -v ON_ERROR_STOP=1 -h "$socket" -p "$port" -U postgres -d postgres \
    -c "CREATE ROLE $PG_ROLE LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD'" \
    -c "GRANT pg_signal_backend TO $PG_ROLE" \
    -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE" >/dev/null
  # pg_signal_backend: a test's DROP DATABASE ... WITH (FORCE) may meet an autovacuum worker on the
  # database, which only a superuser or a member of pg_signal_backend may end.
  # The same path the tests take: TCP and a password.
  PGPASSWORD="$PG_PASSWORD" "$bin/psql" -q -X -tA -h 127.0.0.1 -p "$port" -U "$PG_ROLE" -d "$PG_DB" \
    -c 'select 1' >/dev/null || die "PostgreSQL does not accept $PG_ROLE over TCP"
}

write_env() {
  local tmp="$1" kafka_port="$2" pg_port="$3" os_user="$4" bin="$5" sasl_port="$6" ssl_port="$7"
  mkdir -p "$STATE_DIR"
  {
    echo "# Written by scripts/services.sh start; source it before running the integration tests."
    printf 'export SHADOWD_TEST_KAFKA=%q\n' "127.0.0.1:$kafka_port"
    printf 'export SHADOWD_TEST_DATABASE_URL=%q\n' \
      "postgresql+asyncpg://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$pg_port/$PG_DB"
    printf 'export SHADOWD_TEST_KAFKA_SASL=%q\n' "127.0.0.1:$sasl_port"
    printf 'export SHADOWD_TEST_KAFKA_SASL_USERNAME=%q\n' "$KAFKA_SASL_USER"
    printf 'export SHADOWD_TEST_KAFKA_SASL_PASSWORD=%q\n' "$KAFKA_SASL_PASSWORD"
    printf 'export SHADOWD_TEST_KAFKA_SSL=%q\n' "127.0.0.1:$ssl_port"
    printf 'export SHADOWD_TEST_TLS_CA=%q\n' "$tmp/tls/ca.crt"
    printf 'export SHADOWD_TEST_TLS_CLIENT_CERT=%q\n' "$tmp/tls/client.crt"
    printf 'export SHADOWD_TEST_TLS_CLIENT_KEY=%q\n' "$tmp/tls/client.key"
    printf 'export SHADOWD_TEST_TLS_CLIENT_KEY_PASSWORD=%q\n' "$TLS_CLIENT_KEY_PASSWORD"
    printf 'export SHADOWD_TEST_KAFKA_VERSION=%q\n' "$KAFKA_VERSION"
    printf 'export SHADOWD_TEST_KAFKA_PID=%q\n' "$KAFKA_PID"
    printf 'export SHADOWD_TEST_KAFKA_LOG_DIR=%q\n' "$STATE_DIR/kafka"
    printf 'export SHADOWD_TEST_PG_PORT=%q\n' "$pg_port"
    printf 'export SHADOWD_TEST_PG_BIN=%q\n' "$bin"
    printf 'export SHADOWD_TEST_PG_DATA=%q\n' "$tmp/pg/data"
    printf 'export SHADOWD_TEST_PG_LOG=%q\n' "$tmp/pg/server.log"
    printf 'export SHADOWD_TEST_PG_OS_USER=%q\n' "$os_user"
    printf 'export SHADOWD_TEST_SERVICES_TMP=%q\n' "$tmp"
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

start_services() {
  # Starting twice replaces the old services instead of leaking them.
  stop_services
  ensure_tools
  fetch_kafka
  local tmp os_user bin kafka_port controller_port pg_port sasl_port ssl_port
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/shadowd-services.XXXXXX")"
  chmod 755 "$tmp" # the postgres OS user must reach its data dir inside
  os_user="$(pg_os_user)"
  bin="$(pg_bin_dir)"
  read -r kafka_port controller_port pg_port sasl_port ssl_port <<<"$(free_ports 5)"
  # Fresh secrets per run: nothing here is worth stealing, and nothing is reused.
  KAFKA_SASL_PASSWORD="$(random_secret)"
  TLS_CLIENT_KEY_PASSWORD="$(random_secret)"
  TLS_STORE_PASSWORD="$(random_secret)"
  KAFKA_PID=""
  # Written before anything starts, so `stop` can clean up after a failed start.
  write_env "$tmp" "$kafka_port" "$pg_port" "$os_user" "$bin" "$sasl_port" "$ssl_port"
  trap 'log "start failed; stopping what did start"; stop_services' EXIT
  make_tls "$tmp/tls"
  start_kafka "$tmp" "$kafka_port" "$controller_port" "$sasl_port" "$ssl_port"
  write_env "$tmp" "$kafka_port" "$pg_port" "$os_user" "$bin" "$sasl_port" "$ssl_port"
  # PostgreSQL comes up while the JVM warms up.
  start_postgres "$tmp" "$pg_port" "$os_user" "$bin"
  wait_for_kafka "127.0.0.1:$kafka_port"
  trap - EXIT
  log "Kafka and PostgreSQL are up; environment in ${ENV_FILE#"$ROOT"/}"
  # Passwords stay in the file; what is printed has them masked.
  grep '^export' "$ENV_FILE" | sed -E 's/(PASSWORD=).*/\1***/; s#(://[^:/@]*:)[^@]*@#\1***@#'
}

main() {
  case "${1:-}" in
    start) start_services ;;
    stop) stop_services ;;
    env)
      [[ -f "$ENV_FILE" ]] || die "no ${ENV_FILE#"$ROOT"/}: run 'bash scripts/services.sh start'"
      cat "$ENV_FILE"
      ;;
    deps)
      ensure_tools
      fetch_kafka
      ;;
    *)
      echo "usage: bash scripts/services.sh start|stop|env|deps" >&2
      exit 2
      ;;
  esac
}

main "$@"
