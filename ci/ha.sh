# The highly available database of `ci/stack start --ha`, sourced by ci/stack:
#   etcd (the consensus store), three PostgreSQL 15 nodes under Patroni
#   (a leader, a synchronous standby with synchronous_mode, and an
#   asynchronous replica that serves reads), HAProxy routing a primary port
#   to the leader and a replica port to the asynchronous replica by
#   Patroni's REST health checks, and PgBouncer (transaction pooling) on
#   each HAProxy port. Everything under $DATA/ha, on ports TICKETING_PORT_BASE
#   + 60 and up, beside the plain stack (which stays as it is).

HA="$DATA/ha"
HA_SCOPE=ticketing
HA_NODES=(node1 node2 node3)
# Patroni's timing, chosen for a fast failover on one machine: a leader
# whose Postgres died gives the lock up at once (primary_start_timeout 0),
# the others look every second, and a leader that stops renewing (frozen,
# cut off) loses the lock after ttl. Patroni requires loop_wait + 2 ×
# retry_timeout <= ttl.
HA_TTL=${HA_TTL:-6}
HA_LOOP_WAIT=${HA_LOOP_WAIT:-1}
HA_RETRY_TIMEOUT=${HA_RETRY_TIMEOUT:-2}

ha_pg_port() { echo $((HA_PG_PORT + $1)); }       # node index 0..2
ha_rest_port() { echo $((HA_REST_PORT + $1)); }

ha_install_packages() {
  ensure_packages patroni:patroni /usr/bin/etcd:etcd-server /usr/sbin/haproxy:haproxy curl:curl pgrep:procps
}

ha_prepare_dirs() {
  # A cluster made before its state moved to etcd's v2 API (the marker) has
  # none there: Patroni would find no cluster beside data directories that
  # belong to one. Such a cluster (test data only) starts afresh.
  if [[ -d "$HA/etcd/data" && ! -f "$HA/etcd/v2" ]]; then
    log "the HA cluster's state is in etcd3 (before the move to v2): starting it afresh"
    ha_stop
    rm -rf "$HA"
  fi
  mkdir -p "$HA/etcd" "$HA/haproxy" "$HA/pgbouncer"
  touch "$HA/etcd/v2"
  local node
  for node in "${HA_NODES[@]}"; do mkdir -p "$HA/$node"; done
  if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$HA" "$HA"/node* "$HA/pgbouncer"; fi
  chmod 700 "$HA"/node*
}

ha_start_etcd() {
  if pid_alive "$HA/etcd.pid" && port_open "$HA_ETCD_PORT"; then log "etcd already running on $HA_ETCD_PORT"; return; fi
  local peer="http://127.0.0.1:$HA_ETCD_PEER_PORT"
  nohup etcd --name ha --data-dir "$HA/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$HA_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$HA_ETCD_PORT" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "ha=$peer" --initial-cluster-state new --initial-cluster-token "$HA_SCOPE" \
    --enable-v2=true >"$LOGS/etcd.log" 2>&1 &
  echo $! >"$HA/etcd.pid"
  wait_port "$HA_ETCD_PORT" etcd
  log "etcd started on $HA_ETCD_PORT"
}

# One node's Patroni configuration. One replica is the synchronous standby
# (the only one Patroni promotes), the other the asynchronous replica the
# read port routes to; either may take either role.
ha_node_config() { # index
  local index=$1 node=${HA_NODES[$1]} pg rest
  pg=$(ha_pg_port "$index"); rest=$(ha_rest_port "$index")
  cat <<YAML
scope: $HA_SCOPE
name: $node
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
# etcd's v2 API, not etcd3: Debian's Patroni 3.0.2 renews the leader key on
# etcd3 with an unconditional put, so a leader frozen past ttl that thaws
# overwrote its successor's key and went on accepting writes (split brain:
# issue 25, one partition run in five). On v2 the renewal is a compare-and-swap
# on its own name, which fails once another node holds the key, and the
# thawed node demotes itself. (Patroni 3.0.3 made the etcd3 put conditional.)
etcd:
  host: 127.0.0.1:$HA_ETCD_PORT
bootstrap:
  dcs:
    ttl: $HA_TTL
    loop_wait: $HA_LOOP_WAIT
    retry_timeout: $HA_RETRY_TIMEOUT
    primary_start_timeout: 0
    maximum_lag_on_failover: 1048576
    # A node on an older timeline (a former leader back from a partition)
    # never wins a leader race.
    check_timeline: true
    synchronous_mode: true
    # Never turn synchronous replication off, not even with no standby in
    # sync: a leader cut off from its standby then commits nothing it could
    # lose (writes wait instead). Any replica may become the synchronous one.
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 1000
        shared_buffers: 256MB
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        shared_preload_libraries: pg_stat_statements
        pg_stat_statements.track: all
        pg_stat_statements.max: 50000
        log_min_duration_statement: 200
        log_line_prefix: '%m [%p] %d %u '
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $HA/$node/data
  bin_dir: $PG_BIN
  pgpass: $HA/$node/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: '$HA/$node'
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
YAML
}

ha_start_node() { # index
  local index=$1 node=${HA_NODES[$1]}
  local pidfile="$HA/$node/patroni.pid" config="$HA/$node/patroni.yml"
  if pid_alive "$pidfile" && grep -q patroni "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; then
    log "patroni $node already running"; return
  fi
  ha_node_config "$index" >"$config"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$config"
  if [[ $(id -u) == 0 ]]; then
    # setpriv execs (runuser would stay as a parent): the pid file is Patroni's own.
    nohup setpriv --reuid=postgres --regid=postgres --init-groups patroni "$config" >>"$LOGS/patroni-$node.log" 2>&1 &
  else
    nohup patroni "$config" >>"$LOGS/patroni-$node.log" 2>&1 &
  fi
  echo $! >"$pidfile"
}

# The REST API's answer for a role check (200 or not), as HAProxy asks it.
ha_answers() { # rest_port path
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2" 2>/dev/null | grep -q '^200$'
}

# The node answering `path` (200), if any.
ha_node_answering() { # path
  local index
  for index in 0 1 2; do
    if ha_answers "$(ha_rest_port "$index")" "$1"; then echo "${HA_NODES[$index]}"; return 0; fi
  done
  return 1
}

# How many servers HAProxy has up behind a port (`primary`, `replica`).
ha_haproxy_up() { # proxy
  curl -s "http://127.0.0.1:$HA_HAPROXY_STATS_PORT/;csv" 2>/dev/null \
    | awk -F, -v proxy="$1" '$1 == proxy && $2 != "FRONTEND" && $2 != "BACKEND" && $18 == "UP" { n++ } END { print n + 0 }'
}

# Waits for a leader, a synchronous standby and an asynchronous replica,
# and for HAProxy to route each port to one server.
ha_wait_cluster() {
  local leader sync async
  for _ in $(seq 1 600); do
    if leader=$(ha_node_answering /primary) && sync=$(ha_node_answering /sync) && async=$(ha_node_answering /async) \
      && [[ $(ha_haproxy_up primary) == 1 && $(ha_haproxy_up replica) == 1 ]]; then
      log "cluster up: leader $leader, synchronous standby $sync, asynchronous replica $async"
      return 0
    fi
    sleep 0.2
  done
  die "the Patroni cluster did not come up (see $LOGS/patroni-*.log)"
}

# The application's role and databases, once, on the leader (through HAProxy).
ha_prepare_database() {
  local psql=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$HA_PRIMARY_PORT" -U postgres)
  for _ in $(seq 1 100); do "${psql[@]}" -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
  if [[ -z $("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'") ]]; then
    "${psql[@]}" -d postgres -c "CREATE ROLE $DB_USER LOGIN CREATEDB" -c "GRANT pg_read_all_stats TO $DB_USER"
    "${psql[@]}" -d template1 -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
    "${psql[@]}" -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
    "${psql[@]}" -d postgres -c "CREATE DATABASE $DB_NAME OWNER $DB_USER"
  fi
}

# HAProxy: the primary port goes to whichever node Patroni says leads
# (/primary answers 200 only there), the replica port to the asynchronous
# replica (/async). A node marked down has its sessions cut at once, so no
# connection lingers on a demoted leader.
ha_start_haproxy() {
  local cfg="$HA/haproxy/haproxy.cfg" pidfile="$HA/haproxy/haproxy.pid" index servers=""
  # Both ports list every node; the health check decides which one serves.
  for index in 0 1 2; do
    servers+="    server ${HA_NODES[$index]} 127.0.0.1:$(ha_pg_port "$index") check port $(ha_rest_port "$index")"$'\n'
  done
  cat >"$cfg" <<CFG
global
    maxconn 4000
    pidfile $pidfile
    daemon

defaults
    mode tcp
    log global
    retries 2
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s

listen stats
    mode http
    bind 127.0.0.1:$HA_HAPROXY_STATS_PORT
    stats enable
    stats uri /

listen primary
    bind 127.0.0.1:$HA_PRIMARY_PORT
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
${servers}
listen replica
    bind 127.0.0.1:$HA_REPLICA_PORT
    option httpchk OPTIONS /async
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
${servers}
CFG
  # Running already: left as it is. A reload would start a new process
  # whose servers all count as up until their first checks, and the
  # primary port would spread connections over replicas for a moment.
  if ! pid_alive "$pidfile"; then haproxy -f "$cfg"; fi
  wait_port "$HA_PRIMARY_PORT" haproxy
  log "haproxy: primary on $HA_PRIMARY_PORT, replica on $HA_REPLICA_PORT (stats http://127.0.0.1:$HA_HAPROXY_STATS_PORT/)"
}

ha_start() {
  ha_install_packages
  ha_prepare_dirs
  ha_start_etcd
  # node1 first, so a new cluster starts with node1 leading.
  ha_start_node 0
  for _ in $(seq 1 600); do ha_node_answering /primary >/dev/null && break; sleep 0.2; done
  ha_start_node 1
  ha_start_node 2
  ha_start_haproxy
  ha_wait_cluster
  ha_prepare_database
  PGBOUNCER_DIR="$HA/pgbouncer" start_pgbouncer pgbouncer-ha "$HA_PGBOUNCER_PORT" "$HA_PRIMARY_PORT"
  PGBOUNCER_DIR="$HA/pgbouncer" start_pgbouncer pgbouncer-ha-replica "$HA_PGBOUNCER_REPLICA_PORT" "$HA_REPLICA_PORT"
}

# The environment of the HA database (DATABASE_* only): .run/env-ha.
ha_write_env() {
  cat >"$RUN/env-ha" <<ENV
# Written by ci/stack start --ha / ci/stack ha: the highly available database.
DATABASE_URL=postgres://$DB_USER@127.0.0.1:$HA_PGBOUNCER_PORT/$DB_NAME
DATABASE_REPLICA_URL=postgres://$DB_USER@127.0.0.1:$HA_PGBOUNCER_REPLICA_PORT/$DB_NAME
DATABASE_DIRECT_URL=postgres://$DB_USER@127.0.0.1:$HA_PRIMARY_PORT/$DB_NAME
DATABASE_REPLICA_DIRECT_URL=postgres://$DB_USER@127.0.0.1:$HA_REPLICA_PORT/$DB_NAME
PGBOUNCER_ADMIN_URL=postgres://postgres@127.0.0.1:$HA_PGBOUNCER_PORT/pgbouncer
HA_PATRONI_CONFIG=$HA/node1/patroni.yml
HA_REST_PORTS=$(ha_rest_port 0),$(ha_rest_port 1),$(ha_rest_port 2)
HA_PG_PORTS=$(ha_pg_port 0),$(ha_pg_port 1),$(ha_pg_port 2)
HA_HAPROXY_STATS_URL=http://127.0.0.1:$HA_HAPROXY_STATS_PORT/
HA_DATA_DIR=$HA
ENV
}

ha_stop() {
  local node pidfile
  for name in pgbouncer-ha-replica pgbouncer-ha; do
    pidfile="$HA/pgbouncer/$name.pid"
    if pid_alive "$pidfile"; then kill "$(head -1 "$pidfile")"; log "$name stopped"; fi
  done
  if pid_alive "$HA/haproxy/haproxy.pid"; then
    kill "$(cat "$HA/haproxy/haproxy.pid")"
    # Gone before a start right after can bind its ports (it takes a moment).
    for _ in $(seq 1 100); do pid_alive "$HA/haproxy/haproxy.pid" || break; sleep 0.1; done
    log "haproxy stopped"
  fi
  rm -f "$HA/pgbouncer/"*.pid
  # Patroni stops its Postgres on SIGTERM (a fast shutdown).
  for node in "${HA_NODES[@]}"; do
    pidfile="$HA/$node/patroni.pid"
    if pid_alive "$pidfile"; then kill "$(cat "$pidfile")"; fi
  done
  for node in "${HA_NODES[@]}"; do
    pidfile="$HA/$node/patroni.pid"
    for _ in $(seq 1 150); do pid_alive "$pidfile" || break; sleep 0.2; done
    if pid_alive "$pidfile"; then kill -9 "$(cat "$pidfile")"; fi
    # A postmaster Patroni left behind (Patroni itself killed): stop it too.
    if [[ -f "$HA/$node/data/postmaster.pid" ]] && as_pg "$PG_BIN/pg_ctl" -D "$HA/$node/data" status >/dev/null 2>&1; then
      as_pg "$PG_BIN/pg_ctl" -D "$HA/$node/data" -m immediate -w stop >/dev/null
    fi
    [[ -f "$pidfile" ]] && log "patroni $node stopped"
    rm -f "$pidfile"
  done
  if pid_alive "$HA/etcd.pid"; then
    kill "$(cat "$HA/etcd.pid")"
    # Gone before a start right after binds its ports, or its data is removed under it.
    for _ in $(seq 1 100); do pid_alive "$HA/etcd.pid" || break; sleep 0.1; done
    log "etcd stopped"
  fi
  # Pid files go with their processes: a stale one could name a reused pid.
  rm -f "$HA/etcd.pid" "$HA/haproxy/haproxy.pid"
}

ha_status() {
  if ! pid_alive "$HA/etcd.pid"; then echo "down etcd (no HA cluster)"; return 0; fi
  echo "up   etcd :$HA_ETCD_PORT"
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- patronictl -c "$HA/node1/patroni.yml" list 2>/dev/null || echo "down patroni"
  else
    patronictl -c "$HA/node1/patroni.yml" list 2>/dev/null || echo "down patroni"
  fi
  local name
  name="haproxy :$HA_PRIMARY_PORT/:$HA_REPLICA_PORT"; check pid_alive "$HA/haproxy/haproxy.pid"
  name="pgbouncer-ha :$HA_PGBOUNCER_PORT"; check pid_alive "$HA/pgbouncer/pgbouncer-ha.pid"
  name="pgbouncer-ha-replica :$HA_PGBOUNCER_REPLICA_PORT"; check pid_alive "$HA/pgbouncer/pgbouncer-ha-replica.pid"
}
