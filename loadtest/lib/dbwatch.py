"""What the database and the machine do while a ci/bench scenario is measured.

  dbwatch.py sample PREFIX PRIMARY_DSN REPLICA_DSN METRICS_URL [SERVER_PID]
      until SIGTERM: once a second, the primary's background work (autovacuum
      and analyze workers and their progress, checkpoints and the buffers they
      wrote, WAL written), the buffer hits and reads of every table and index
      of the database on the primary and on the replica (reads go there), and
      the machine's CPU (idle, iowait and steal included), disk traffic
      and dirty memory, and the server's resident memory, as JSON lines in
      PREFIX.db.jsonl; the server's metrics scraped at the start and at the end
      (PREFIX.metrics-start, -end)
  dbwatch.py summary PREFIX
      the window's figures as JSON (PREFIX.db.json) and one line on stdout:
      what ran in the background, the hit ratio and what was read from disk,
      WAL, iowait, and the server's time per phase (waiting for a connection,
      in the database, each stage of a new order, the whole request)
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

SAMPLE = r"""
SELECT json_build_object(
  't', extract(epoch FROM clock_timestamp()),
  -- Autovacuum anywhere on the server takes its share of the machine; one in
  -- another database (an earlier run's) is named as such.
  'autovacuum', (SELECT coalesce(json_agg(CASE WHEN datname = current_database() THEN query
                                                ELSE query || ' [database ' || datname || ']' END), '[]')
                   FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query <> ''),
  'vacuum', (SELECT coalesce(json_agg(json_build_object('table', relid::regclass::text, 'phase', phase,
                      'scanned', heap_blks_scanned, 'total', heap_blks_total)), '[]') FROM pg_stat_progress_vacuum),
  'analyze', (SELECT coalesce(json_agg(json_build_object('table', relid::regclass::text, 'phase', phase)), '[]')
                FROM pg_stat_progress_analyze),
  'checkpoints', (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
  'buffers_checkpoint', (SELECT buffers_checkpoint FROM pg_stat_bgwriter),
  'buffers_backend', (SELECT buffers_backend FROM pg_stat_bgwriter),
  'wal_bytes', pg_current_wal_lsn() - '0/0'::pg_lsn,
  'commits', (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
  'relations', RELATIONS,
  'dead_tuples', (SELECT json_object_agg(relname, n_dead_tup) FROM pg_stat_user_tables WHERE n_dead_tup > 0)
)
"""
# Buffer hits and reads per table and index: {name: [hit, read]}.
RELATIONS = """(SELECT json_object_agg(name, json_build_array(hit, read)) FROM (
      SELECT relname AS name, coalesce(heap_blks_hit, 0) + coalesce(toast_blks_hit, 0) AS hit,
             coalesce(heap_blks_read, 0) + coalesce(toast_blks_read, 0) AS read FROM pg_statio_user_tables
      UNION ALL
      SELECT indexrelname, idx_blks_hit, idx_blks_read FROM pg_statio_user_indexes) r
    WHERE hit + read > 0)"""
SAMPLE = SAMPLE.replace("RELATIONS", RELATIONS)
REPLICA_SAMPLE = f"SELECT json_build_object('relations', {RELATIONS})"


def resident_bytes(pid):
    """VmRSS of a process, 0 once it is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine():
    cpu = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    written = read = 0
    for line in open("/proc/diskstats"):
        fields = line.split()
        # Whole disks only (vda, sda, nvme0n1), not their partitions or loop devices.
        if re.fullmatch(r"(?:[sv]d[a-z]+|xvd[a-z]+|nvme\d+n\d+)", fields[2]):
            read += int(fields[5]) * 512
            written += int(fields[9]) * 512
    memory = {}
    for line in open("/proc/meminfo"):
        key, value = line.split(":")
        if key in ("Dirty", "Writeback"):
            memory[key.lower()] = int(value.split()[0]) * 1024
    # user, nice, system, idle, iowait, irq, softirq, steal
    return {"cpu": cpu[:8], "disk_read": read, "disk_written": written, **memory}


def scrape(url, path):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            open(path, "wb").write(response.read())
    except OSError as error:
        open(path, "w").write(f"# scrape failed: {error}\n")


def query(dsn, sql):
    result = subprocess.run(["psql", dsn, "-XAtq", "-c", sql], capture_output=True, text=True)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None


def sample(prefix, dsn, replica_dsn, metrics_url, server_pid=None):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    scrape(metrics_url, f"{prefix}.metrics-start")
    with open(f"{prefix}.db.jsonl", "w") as out:
        while not stop:
            started = time.monotonic()
            row = query(dsn, SAMPLE)
            if row:
                row["replica_relations"] = (query(replica_dsn, REPLICA_SAMPLE) or {}).get("relations") or {}
                row.update(machine())
                if server_pid:
                    row["server_rss"] = resident_bytes(server_pid)
                out.write(json.dumps(row) + "\n")
                out.flush()
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    scrape(metrics_url, f"{prefix}.metrics-end")


def histograms(path):
    """{(name, labels): [sum, count]} of the histograms in a Prometheus scrape."""
    found = {}
    for line in open(path):
        # Labels may hold braces themselves (route="GET /v1/events/{event}").
        m = re.match(r"(ticketing_\w+)_(sum|count)(\{.*\})? (\S+)$", line)
        if m:
            entry = found.setdefault((m.group(1), m.group(3) or ""), [0.0, 0.0])
            entry[0 if m.group(2) == "sum" else 1] = float(m.group(4))
    return found


def phases(prefix):
    """Mean milliseconds per call over the window of the server's phases, by pool, route, order stage or lanes."""
    start, end = histograms(f"{prefix}.metrics-start"), histograms(f"{prefix}.metrics-end")
    wanted = {
        "ticketing_db_pool_acquire_seconds": "acquire",
        "ticketing_db_query_seconds": "query",
        "ticketing_request_duration_seconds": "request",
        "ticketing_order_phase_seconds": "order",
        "ticketing_batch_wait_seconds": "lane wait",
        "ticketing_batch_call_seconds": "lane call",
    }
    means = {}
    for (name, labels), (total, count) in end.items():
        if name not in wanted:
            continue
        before = start.get((name, labels), [0.0, 0.0])
        calls = count - before[1]
        if calls < 100:
            continue
        label = re.search(r'(?:pool|route|phase|lanes)="([^"]+)"', labels)
        key = f"{wanted[name]} {label.group(1) if label else ''}".strip()
        means[key] = {"ms": round(1000 * (total - before[0]) / calls, 3), "calls": int(calls)}
    return means


def summary(prefix):
    rows = [json.loads(line) for line in open(f"{prefix}.db.jsonl") if line.strip()]
    if len(rows) < 2:
        print("no database samples")
        return
    first, last = rows[0], rows[-1]
    seconds = last["t"] - first["t"]
    background = {}
    for row in rows:
        for activity in row["autovacuum"]:
            # "autovacuum: VACUUM ANALYZE public.tickets (to prevent wraparound)" → "VACUUM ANALYZE tickets"
            what = re.sub(r"^autovacuum: | \(.*\)$|public\.", "", activity)
            background[what] = background.get(what, 0) + 1
    def deltas(key):
        reads, hits = {}, {}
        for name, (hit, read) in (last.get(key) or {}).items():
            hit0, read0 = (first.get(key) or {}).get(name, [0, 0])
            reads[name], hits[name] = read - read0, hit - hit0
        return reads, hits

    reads, hits = deltas("relations")
    replica_reads, replica_hits = deltas("replica_relations")
    total_read, total_hit = sum(reads.values()), sum(hits.values())
    replica_read, replica_hit = sum(replica_reads.values()), sum(replica_hits.values())
    cpu = [b - a for a, b in zip(first["cpu"], last["cpu"])]
    window = {
        "seconds": round(seconds, 1),
        "background_seconds": background,
        "checkpoints": last["checkpoints"] - first["checkpoints"],
        "buffers_checkpoint": last["buffers_checkpoint"] - first["buffers_checkpoint"],
        "buffers_backend": last["buffers_backend"] - first["buffers_backend"],
        "wal_mb": round((last["wal_bytes"] - first["wal_bytes"]) / 2**20, 1),
        "commits": last["commits"] - first["commits"],
        "hit_percent": round(100 * total_hit / max(total_hit + total_read, 1), 2),
        "blocks_read": total_read,
        "blocks_read_by_relation": {k: v for k, v in sorted(reads.items(), key=lambda kv: -kv[1]) if v > 0},
        "replica_hit_percent": round(100 * replica_hit / max(replica_hit + replica_read, 1), 2),
        "replica_blocks_read": replica_read,
        "replica_blocks_read_by_relation": {
            k: v for k, v in sorted(replica_reads.items(), key=lambda kv: -kv[1]) if v > 0
        },
        "iowait_percent": round(100 * cpu[4] / max(sum(cpu), 1), 1),
        # A virtual machine's CPU taken by its host: the machine slowing under the window.
        "steal_percent": round(100 * cpu[7] / max(sum(cpu), 1), 1),
        "idle_percent": round(100 * cpu[3] / max(sum(cpu), 1), 1),
        "disk_written_mb": round((last["disk_written"] - first["disk_written"]) / 2**20, 1),
        "disk_read_mb": round((last["disk_read"] - first["disk_read"]) / 2**20, 1),
        "dirty_mb_max": round(max(row.get("dirty", 0) for row in rows) / 2**20, 1),
        "dead_tuples_end": last.get("dead_tuples") or {},
        "server_rss_mb": {
            "start": round(first.get("server_rss", 0) / 2**20, 1),
            "max": round(max(row.get("server_rss", 0) for row in rows) / 2**20, 1),
            "end": round(last.get("server_rss", 0) / 2**20, 1),
        },
        "phases_ms": phases(prefix) if os.path.exists(f"{prefix}.metrics-end") else {},
    }
    json.dump(window, open(f"{prefix}.db.json", "w"), indent=2)
    print(line(window))


def line(window):
    background = ", ".join(f"{what} {n} s" for what, n in window["background_seconds"].items()) or "none"
    def most(key):
        return ", ".join(f"{name} {n}" for name, n in list(window.get(key, {}).items())[:3])

    read_most, replica_most = most("blocks_read_by_relation"), most("replica_blocks_read_by_relation")
    phase = ", ".join(f"{key} {value['ms']:.2f}" for key, value in window["phases_ms"].items()
                      if not key.startswith("request ") or value["calls"] >= 1000)
    return (f"autovacuum/analyze: {background}; checkpoints {window['checkpoints']} "
            f"({window['buffers_checkpoint']} buffers); primary hit {window['hit_percent']} %, "
            f"{window['blocks_read']} blocks read{f' ({read_most})' if read_most else ''}; "
            f"replica hit {window.get('replica_hit_percent', '—')} %, {window.get('replica_blocks_read', '—')} blocks read"
            f"{f' ({replica_most})' if replica_most else ''}; "
            f"WAL {window['wal_mb']} MB; idle {window.get('idle_percent', '—')} %, "
            f"steal {window.get('steal_percent', '—')} %, iowait {window['iowait_percent']} %, disk writes {window['disk_written_mb']} MB; "
            f"ms per call: {phase or '—'}")


def main(argv):
    if len(argv) in (6, 7) and argv[1] == "sample":
        sample(*argv[2:])
    elif len(argv) == 3 and argv[1] == "summary":
        summary(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
