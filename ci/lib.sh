# Shared by the ci/ scripts: paths, ports and helpers. Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN="$ROOT/.run"
ENV_FILE="$RUN/env"
PG_BIN=/usr/lib/postgresql/15/bin

# rustup's cargo, also for shells that did not source ~/.cargo/env; and the
# sbin folders (runuser, nginx) that minimal environments leave out.
[[ -d "$HOME/.cargo/bin" ]] && PATH="$HOME/.cargo/bin:$PATH"
PATH="$PATH:/usr/sbin:/sbin"

# A target directory outside the checkout: fresh clones on a reused machine
# skip the cold build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ticketing/target}"

# Ports derive from the checkout's path so two checkouts on one machine never
# clash, and stay fixed for a given checkout. TICKETING_PORT_BASE overrides.
# All below the kernel's ephemeral range (32768 and up, ip_local_port_range):
# a port in it can be held by any client connection of the moment, and a
# fresh clone's Postgres once failed to start on a port a closing client
# still held.
if [[ -z "${TICKETING_PORT_BASE:-}" ]]; then
  TICKETING_PORT_BASE=$(( 20000 + ($(printf '%s' "$ROOT" | cksum | cut -d' ' -f1) % 127) * 100 ))
fi
PG_PRIMARY_PORT=$((TICKETING_PORT_BASE + 0))
PG_REPLICA_PORT=$((TICKETING_PORT_BASE + 1))
PGBOUNCER_PORT=$((TICKETING_PORT_BASE + 2))
PGBOUNCER_REPLICA_PORT=$((TICKETING_PORT_BASE + 3))
REDIS_PORT=$((TICKETING_PORT_BASE + 4))
SERVE_PORT=$((TICKETING_PORT_BASE + 10))
ADMIN_PORT=$((TICKETING_PORT_BASE + 11))
EDGE_PORT=$((TICKETING_PORT_BASE + 12))
EDGE_GRPC_PORT=$((TICKETING_PORT_BASE + 13))
SMTP_PORT=$((TICKETING_PORT_BASE + 5))
MIDTRANS_SIM_PORT=$((TICKETING_PORT_BASE + 6))
WORKER_ADMIN_PORT=$((TICKETING_PORT_BASE + 7))
# The highly available database (ci/stack start --ha, ci/ha.sh): etcd,
# three Postgres nodes and their Patroni REST APIs, HAProxy, PgBouncer.
HA_ETCD_PORT=$((TICKETING_PORT_BASE + 60))
HA_ETCD_PEER_PORT=$((TICKETING_PORT_BASE + 61))
HA_PG_PORT=$((TICKETING_PORT_BASE + 62))      # nodes at +62, +63, +64
HA_REST_PORT=$((TICKETING_PORT_BASE + 65))    # their REST APIs at +65, +66, +67
HA_PRIMARY_PORT=$((TICKETING_PORT_BASE + 68))
HA_REPLICA_PORT=$((TICKETING_PORT_BASE + 69))
HA_HAPROXY_STATS_PORT=$((TICKETING_PORT_BASE + 70))
HA_PGBOUNCER_PORT=$((TICKETING_PORT_BASE + 71))
HA_PGBOUNCER_REPLICA_PORT=$((TICKETING_PORT_BASE + 72))
# Python tools from PyPI (the SMTP sink, Midtrans's official SDK for the
# simulator check, the Kubernetes manifest checks), kept outside the checkout
# like the cargo target.
PY_TOOLS="$HOME/.cache/ticketing/venv"
# Replicas of `ci/stack start --replicas N` use SERVE_PORT+20+i (admin +40+i).

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
  die "$2 did not open port $1 (see $RUN/logs)"
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(head -1 "$1")" 2>/dev/null; }

# Installs Debian packages for the commands that are missing (as root).
ensure_packages() { # "command:package" ...
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [[ -e "${pair%%:*}" ]] || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: install them or run as root"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The venv with those tools, pinned.
ensure_python_tools() {
  if [[ ! -x "$PY_TOOLS/bin/checkov" ]] || ! "$PY_TOOLS/bin/python" -c 'import aiosmtpd, midtransclient, kubernetes_validate' 2>/dev/null; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_packages python3:python3 /usr/share/doc/python3-venv:python3-venv
    log "installing aiosmtpd, midtransclient, kubernetes-validate and checkov into $PY_TOOLS"
    python3 -m venv "$PY_TOOLS"
    "$PY_TOOLS/bin/pip" install -q --disable-pip-version-check aiosmtpd==1.4.6 midtransclient==1.4.2 \
      kubernetes-validate==1.37.0 checkov==3.3.30
  fi
}

# The REST API's checkers (the OpenAPI document's validator, Schemathesis),
# in their own venv: their pins and checkov's disagree.
API_TOOLS="$HOME/.cache/ticketing/api-venv"
export API_TOOLS
ensure_api_tools() {
  if ! "$API_TOOLS/bin/python" -c 'import schemathesis, openapi_spec_validator' 2>/dev/null; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_packages python3:python3 /usr/share/doc/python3-venv:python3-venv
    log "installing schemathesis and openapi-spec-validator into $API_TOOLS"
    python3 -m venv "$API_TOOLS"
    "$API_TOOLS/bin/pip" install -q --disable-pip-version-check schemathesis==4.32.5 openapi-spec-validator==0.9.0
  fi
}

# The Midtrans simulator (release build) on MIDTRANS_SIM_PORT, so a
# newcomer can pay: settle a payment with
#   curl -X POST http://127.0.0.1:$MIDTRANS_SIM_PORT/_sim/transactions/ORDER_ID/settle
start_midtrans_sim() {
  (cd "$ROOT" && cargo build --release --locked --bin midtrans-sim)
  if ! pid_alive "$RUN/midtrans-sim.pid"; then
    MIDTRANS_SIM_LISTEN="127.0.0.1:$MIDTRANS_SIM_PORT" nohup "$CARGO_TARGET_DIR/release/midtrans-sim" \
      >"$RUN/logs/midtrans-sim.log" 2>&1 &
    echo $! >"$RUN/midtrans-sim.pid"
    wait_port "$MIDTRANS_SIM_PORT" midtrans-sim
  fi
  log "Midtrans simulator on http://127.0.0.1:$MIDTRANS_SIM_PORT"
}

load_env() {
  [[ -f "$ENV_FILE" ]] || die "$ENV_FILE is missing: run ci/stack start"
  set -a; source "$ENV_FILE"; set +a
}

# The Rust toolchain, and what the build embeds: Redoc's bundle for the
# server's /docs (facade/build.rs).
ensure_rust() {
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
  ensure_npm_packages "$ROOT/facade/docs"
}

# Drops the per-test databases earlier runs left behind.
drop_test_databases() {
  local db url
  # The plain stack's, and the HA cluster's when it runs (its primary port).
  for url in "$DATABASE_DIRECT_URL" ${HA_DATABASE_DIRECT_URL:-}; do
    for db in $(psql "$url" -XAtc "SELECT datname FROM pg_database WHERE datname ~ '^(t|tpl)_[0-9a-f]{32}$'" 2>/dev/null); do
      # Cleanup only: a database still held by a session of another role waits for the next run.
      psql "$url" -Xqc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
        log "left $db for the next run (still in use)"
    done
  done
}

# The client toolchains (ci/gen-clients and the client tests in ci/test):
# a venv with the Python client's pinned dev extra (grpcio-tools, mypy,
# pytest), the TypeScript client's npm packages (protoc-gen-es, buf, Connect,
# playwright-core), and Debian's chromium for the browser test.
CLIENTS_VENV="$HOME/.cache/ticketing/clients-venv"
export CLIENTS_VENV
ensure_client_tools() {
  ensure_packages node:nodejs npm:npm chromium:chromium
  local stamp="$CLIENTS_VENV/.pyproject.sha256" wanted
  wanted=$(sha256sum "$ROOT/clients/python/pyproject.toml" | cut -d' ' -f1)
  if [[ ! -x "$CLIENTS_VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_packages python3:python3 /usr/share/doc/python3-venv:python3-venv
    log "installing the Python client's dev tools into $CLIENTS_VENV"
    python3 -m venv "$CLIENTS_VENV"
    "$CLIENTS_VENV/bin/pip" install -q --disable-pip-version-check "$ROOT/clients/python[dev]"
    echo "$wanted" >"$stamp"
  fi
  ensure_npm_packages "$ROOT/clients/typescript"
}

# `npm ci` in DIR when its package-lock.json changed since the last install.
ensure_npm_packages() {
  local dir=$1 wanted
  ensure_packages node:nodejs npm:npm
  wanted=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [[ "$(cat "$dir/node_modules/.lock.sha256" 2>/dev/null)" != "$wanted" ]]; then
    log "installing the npm packages of ${dir#"$ROOT"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$wanted" >"$dir/node_modules/.lock.sha256"
  fi
}
