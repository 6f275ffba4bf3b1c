"""The results table of a ci/bench run (table.json, rendered as table.md).

  summarize.py k6 RESULTS SCENARIO SIZE RATE SUMMARY_JSON K6_CPU_S WALL_S INVARIANTS NOTES [CPU_BEFORE CPU_AFTER]
      one row from a k6 --summary-export file: achieved requests/s, p50/p95/p99,
      error rate, k6's own CPU share, the invariants' verdict, notes, and with two
      `cpu` snapshots the stack's CPU per request, process by process; a script whose calls
      carry phase=measured is read for those only, over MEASURED_DURATION (env)
  summarize.py load RESULTS SCENARIO SIZE REPORT_JSON INVARIANTS NOTES [CPU_BEFORE CPU_AFTER]
      one row from loadtest/arrival-load's report (browse, checkin and their
      ceilings), as a k6 row reads
  summarize.py cpu FILE
      snapshots the CPU seconds used so far by the stack's processes into FILE
  summarize.py pgbench RESULTS SCENARIO PGBENCH_OUTPUT LOG_FILE...
      one row from pgbench's output (tps) and its per-transaction logs (latencies)
  summarize.py refunds RESULTS SIZE PACE REPORT_JSON INVARIANTS CPU_BEFORE CPU_AFTER
      the cancellation's row: refunds made per second against the pace, the time
      from a refund's request to Midtrans's answer (p50/p95/p99), stack CPU per refund
  summarize.py watchers RESULTS SIZE REPORT_JSON INVARIANTS CPU_BEFORE CPU_AFTER
      the live streams' row from watch-load: messages pushed per second, a marker
      order's commit to each watcher's receipt (p50/p95/p99), stack CPU per message,
      memory per watcher in the notes
  summarize.py memory RESULTS SIZE PREFIX RUN_PREFIX...
      one server's resident memory: idle (PREFIX.idle), the peak during each
      event_day run (RUN_PREFIX.db.json, dbwatch.py) and settled after it
      (PREFIX.afterN); growth when a run ends more than 5 % (and 10 MB) above
      the first run's end
  summarize.py render RESULTS
      prints table.md; when a scenario ran at two sizes, a second table compares
      their p95 (flat: within 20 %), and a third gives each measured window's
      database and machine figures (dbwatch.py)
"""
import glob
import json
import os
import re
import statistics
import sys

import dbwatch


def load(results):
    path = os.path.join(results, "table.json")
    return json.load(open(path)) if os.path.exists(path) else []


def save(results, rows):
    json.dump(rows, open(os.path.join(results, "table.json"), "w"), indent=2)


# The stack's processes by name (/proc/PID/stat's comm), as the table labels
# them; HAProxy and Patroni run only on `ci/stack start --ha`.
STACK_PROCESSES = {
    "ticketing": "app",
    "postgres": "Postgres",
    "pgbouncer": "PgBouncer",
    "redis-server": "Redis",
    "haproxy": "HAProxy",
    "patroni": "Patroni",
}


def cpu_snapshot(path):
    """CPU seconds (user + system, all threads) of each stack process by pid;
    the Postgres replica's processes count under Postgres, the worker under app."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = open(stat).read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        # Another build run by TICKETING_BIN (/tmp/ticketing-before) is the app too.
        if name.startswith("ticketing"):
            name = "ticketing"
        if name in STACK_PROCESSES:
            fields = text[text.rindex(")") + 2 :].split()
            used[stat.split("/")[2]] = [name, (int(fields[11]) + int(fields[12])) / ticks]
    json.dump(used, open(path, "w"))


def cpu_per_request(before_path, after_path, requests):
    """Milliseconds of CPU per request, process by process, over the run:
    what each process alive at the end used since the start (or since it
    started); processes that ended during the run are not counted."""
    before, after = json.load(open(before_path)), json.load(open(after_path))
    if not requests:
        return None
    used = {name: 0.0 for name in STACK_PROCESSES}
    for pid, (name, seconds) in after.items():
        used[name] += seconds - (before[pid][1] if before.get(pid, [None])[0] == name else 0)
    return {label: round(1000 * used[name] / requests, 3) for name, label in STACK_PROCESSES.items()}


def seconds_of(duration):
    """A k6 duration ("20s", "1m30s") in seconds; 0 when there is none."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)([hms])", duration))


def k6_row(scenario, size, rate, summary_path, k6_cpu, wall, invariants, notes, cpu_before=None, cpu_after=None):
    measured_seconds = seconds_of(os.environ.get("MEASURED_DURATION", ""))
    metrics = json.load(open(summary_path))["metrics"]

    def trend(name):
        m = metrics.get(name) or {}
        return {q: m.get(f"p({q})") for q in ("50", "95", "99")}

    http_reqs = (metrics.get("http_reqs") or {}).get("rate", 0)
    # gRPC calls: k6 has no counter, so the duration trend's count over the run's length.
    iterations = metrics.get("iterations") or {}
    seconds = iterations.get("count", 0) / iterations["rate"] if iterations.get("rate") else 0
    grpc_reqs = (metrics.get("grpc_req_duration") or {}).get("count", 0) / seconds if seconds else 0
    latency = trend("http_req_duration") if http_reqs >= grpc_reqs else trend("grpc_req_duration")
    # A script that warms up first (checkin.js) tags its calls by phase: the
    # figures are the measured window's, over that window's length.
    measured = next((name for name in metrics if name.startswith("grpc_req_duration{") and "phase:measured" in name), None)
    if measured and measured_seconds:
        grpc_reqs = metrics[measured].get("count", 0) / measured_seconds
        latency = trend(measured)
    requests = (metrics.get("http_reqs") or {}).get("count", 0) + (metrics.get("grpc_req_duration") or {}).get("count", 0)
    failed = (metrics.get("http_req_failed") or {}).get("value")
    return {
        "scenario": scenario,
        "size": size,
        "offered_per_s": float(rate) if rate != "—" else None,
        "achieved_req_per_s": round(http_reqs + grpc_reqs, 1),
        "p50_ms": latency["50"],
        "p95_ms": latency["95"],
        "p99_ms": latency["99"],
        "http_error_rate": failed,
        "generator_cpu_percent": round(100 * float(k6_cpu) / max(float(wall), 1e-9), 1),
        "invariants": invariants,
        "cpu_ms_per_request": cpu_per_request(cpu_before, cpu_after, requests) if cpu_before else None,
        "notes": notes,
    }


def load_row(scenario, size, report_path, invariants, notes, cpu_before=None, cpu_after=None):
    """One row from loadtest/arrival-load's report: the measured window's
    calls, their latency from arrival, and what failed (an answer other than
    the call's expected ones: 200, gRPC OK, or 201/409 for an order); drops
    and the Redeem results go in the notes."""
    report = json.load(open(report_path))
    calls = report["calls"]
    failed = report["unexpected"]
    extra = []
    if report["results"]:
        extra.append("results " + ", ".join(f"{k} {v}" for k, v in sorted(report["results"].items())))
    if failed:
        extra.append("statuses " + ", ".join(f"{k} {v}" for k, v in sorted(report["statuses"].items())))
    if report["dropped"]:
        extra.append(f"{report['dropped']} arrivals dropped (the generator's queue was full)")
    seconds = [s for s in report.get("by_second", []) if s["p95_ms"] is not None]
    if len(seconds) > 1:
        # One stall or the whole window: the window's tail against its seconds'.
        slowest = max(seconds, key=lambda s: s["p95_ms"])
        typical = statistics.median(s["p95_ms"] for s in seconds)
        extra.append(f"each second's p95: median {typical:.1f} ms, slowest {slowest['p95_ms']:.1f} ms "
                     f"(second {slowest['second'] + 1} of {len(seconds)})")
    model = f"{report['offered_per_s']}/s offered" if report["offered_per_s"] else "closed model"
    notes = "; ".join(part for part in [notes, *extra, f"arrival-load, {model}"] if part)
    return {
        "scenario": scenario,
        "size": size,
        "offered_per_s": float(report["offered_per_s"]) or None,
        "achieved_req_per_s": round(report["per_second"], 1),
        "p50_ms": report["p50_ms"],
        "p95_ms": report["p95_ms"],
        "p99_ms": report["p99_ms"],
        "http_error_rate": failed / max(calls, 1),
        "generator_cpu_percent": round(100 * report["cpu_seconds"] / max(report["wall_seconds"], 1e-9), 1),
        "invariants": invariants,
        "cpu_ms_per_request": cpu_per_request(cpu_before, cpu_after, calls) if cpu_before else None,
        "notes": notes,
    }


def queue_row(size, report_path, load_cpu, wall, invariants, cpu_before, cpu_after):
    """The waiting room's row from queue-load's report: the joins are the
    measured calls; position reads, Redis per entry, the pace and the
    orders go in the notes."""
    report = json.load(open(report_path))
    joins, reads, orders = report["joins"], report["position_reads"], report["orders"]
    failed = sum(n for status, n in joins["statuses"].items() if status != "201")
    requests = joins["count"] + reads["count"] + orders["count"] + report["challenges"]["count"]
    notes = (
        f"{report['crowd']:,} joined in {report['join_window_seconds']:.1f} s ({report['joins_started_late']} late starts); "
        f"position reads {reads['per_second']:,.0f}/s p99 {reads['p99_ms']:.1f} ms; "
        f"Redis {report['redis_queue_bytes_per_entry']} B/entry in the queue's keys "
        f"({report['redis_used_memory_bytes_per_join']} B/join of used_memory, spent-solution and limit keys included); "
        f"admitted {report['admitted_first_minute']:,} in the first minute at {report['admit_per_minute']:,}/min "
        f"(accuracy {report['admission_accuracy']:.3f}); orders {orders['count']:,} at {orders['per_second']:,.0f}/s "
        f"p99 {orders['p99_ms']:.1f} ms, statuses {orders['statuses']}; challenges (untimed pool) "
        f"{report['challenges']['per_second']:,.0f}/s p99 {report['challenges']['p99_ms']:.1f} ms"
    )
    return {
        "scenario": "waiting_room",
        "size": size,
        "offered_per_s": round(report["crowd"] / max(report["join_window_seconds"], 1e-9), 1),
        "achieved_req_per_s": joins["per_second"],
        "p50_ms": joins["p50_ms"],
        "p95_ms": joins["p95_ms"],
        "p99_ms": joins["p99_ms"],
        "http_error_rate": failed / max(joins["count"], 1),
        "generator_cpu_percent": round(100 * float(load_cpu) / max(float(wall), 1e-9), 1),
        "invariants": invariants,
        "cpu_ms_per_request": cpu_per_request(cpu_before, cpu_after, requests),
        "notes": notes,
    }


def refunds_row(size, pace, report_path, invariants, cpu_before, cpu_after):
    """A cancelled event's refunds, from the database's own record of them."""
    report = json.load(open(report_path))
    count = report["refunds"] or 0
    made_per_s = count / max(report["created_seconds"] or 0, 1e-9)
    twice = report["refunded_twice"]
    notes = (
        f"{count:,} paid orders refunded, by status {report['by_status']}; all answered "
        f"{report['answered_seconds'] or 0:,.0f} s after the first; latency = request to Midtrans's answer "
        f"(queueing at the pace included); orders refunded twice: {twice}"
    )
    return {
        "scenario": "cancellation",
        "size": size,
        "offered_per_s": float(pace),
        "achieved_req_per_s": round(made_per_s, 1),
        "p50_ms": report["answer_p50_ms"],
        "p95_ms": report["answer_p95_ms"],
        "p99_ms": report["answer_p99_ms"],
        "http_error_rate": None,
        "generator_cpu_percent": None,
        "invariants": invariants if twice == 0 else f"{invariants} REFUNDED_TWICE",
        "cpu_ms_per_request": cpu_per_request(cpu_before, cpu_after, count),
        "notes": notes,
    }


def watchers_row(size, report_path, invariants, cpu_before, cpu_after):
    """The live streams' row from watch-load's report: a marker order's
    commit to each watcher's receipt is the measured latency; memory and
    CPU per message go in the notes."""
    report = json.load(open(report_path))
    latency = report["commit_to_watcher_ms"]
    messages = report["messages"]
    notes = (
        f"{report['watchers']:,} watchers ({report['sse']:,} SSE, {report['grpc']:,} gRPC) connected in "
        f"{report['connected_seconds']:.1f} s, {report['refused_or_ended']} refused or ended; server RSS "
        f"{report['rss_before_kib'] / 1024:.0f} → {report['rss_connected_kib'] / 1024:.0f} MiB "
        f"({report['kib_per_watcher']:.1f} KiB a watcher), {report['rss_end_kib'] / 1024:.0f} MiB after the hold; "
        f"{messages:,} messages pushed in {report['hold_seconds']} s, server CPU "
        f"{report['server_cpu_us_per_message']:.1f} µs a message; {report['markers']} markers, "
        f"{report['marker_receipts']:,} of {report['marker_receipts_expected']:,} receipts; latency = a marker "
        f"order's 201 to a watcher's receipt (max {fmt(latency['max'])} ms)"
    )
    return {
        "scenario": "watchers",
        "size": size,
        "offered_per_s": None,
        "achieved_req_per_s": round(messages / max(report["hold_seconds"], 1), 1),
        "p50_ms": latency["p50"],
        "p95_ms": latency["p95"],
        "p99_ms": latency["p99"],
        "http_error_rate": None,
        "generator_cpu_percent": None,
        "invariants": invariants,
        "cpu_ms_per_request": cpu_per_request(cpu_before, cpu_after, messages),
        "notes": notes,
    }


def memory_row(size, prefix, run_prefixes):
    idle = float(open(f"{prefix}.idle").read())
    runs = []
    for n, run in enumerate(run_prefixes, start=1):
        peak = json.load(open(f"{run}.db.json"))["server_rss_mb"]["max"]
        runs.append((n, peak, float(open(f"{prefix}.after{n}").read())))
    first_after = runs[0][2]
    grew = any(after > first_after * 1.05 and after - first_after > 10 for _, _, after in runs[1:])
    return {
        "scenario": "memory",
        "size": size,
        "offered_per_s": None,
        "invariants": "GREW" if grew else "no growth",
        "notes": f"server RSS idle {idle:.0f} MB; "
        + "; ".join(f"event_day run {n}: peak {peak:.0f} MB, after {after:.0f} MB" for n, peak, after in runs),
    }


def pgbench_row(scenario, output_path, logs):
    output = open(output_path).read()
    tps = float(re.search(r"tps = ([\d.]+)", output).group(1))
    # Log lines: client_id transaction_no time_us script_no time_epoch time_us_part
    latencies = sorted(int(line.split()[2]) / 1000 for log in logs for line in open(log) if line.strip())

    def quantile(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    return {
        "scenario": scenario,
        "size": "—",
        "offered_per_s": None,
        "achieved_req_per_s": round(tps, 1),
        "p50_ms": quantile(0.5),
        "p95_ms": quantile(0.95),
        "p99_ms": quantile(0.99),
        "http_error_rate": None,
        "generator_cpu_percent": None,
        "invariants": "—",
        "notes": "transactions/s; pgbench client on the same cores",
    }


COLUMNS = [
    ("scenario", "scenario"),
    ("size", "data"),
    ("offered_per_s", "offered/s"),
    ("achieved_req_per_s", "achieved req/s"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("http_error_rate", "HTTP errors"),
    ("generator_cpu_percent", "generator CPU %"),
    ("invariants", "invariants"),
    ("cpu_ms_per_request", "stack CPU ms/request"),
    ("notes", "notes"),
]


def fmt(value):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if 0 < value < 0.01 else f"{value:,.1f}"
    return str(value)


def fmt_ms(value):
    """A p95 to compare: two decimals below 10 ms, where 0.1 ms is a fifth of browse's."""
    return "—" if value is None else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def cell(row, key):
    value = row.get(key)
    if key == "http_error_rate" and value is not None:
        return f"{100 * value:.2f} %"
    if key == "cpu_ms_per_request" and value:
        # A process that used nothing is one this stack does not run.
        return " · ".join(f"{label} {ms:.2f}" for label, ms in value.items() if round(ms, 2) > 0)
    return fmt(value)


# Issue 27's knees: each hot path against the machine's ceiling in the same run.
KNEE_TARGETS = {"browse": 0.60, "checkin": 0.90, "flash_sale": 3.0}


def knees(rows):
    """A table of the knees, when the run measured the ceilings: browse's
    capacity (or, under k6, its achieved rate) over the trivial handler's,
    check-in's achieved rate over the trivial gRPC call's at the same offered
    rate (with what the server shed and its own Redeem p99), and the flash
    sale's orders/s while stock lasted over pgbench's hot-row transactions/s.
    Each scenario's last row: the window nearest the ceilings in time; the
    ceilings' rounds paired in order."""
    last = {row["scenario"]: row for row in rows}
    ceiling = lambda name: (last.get(name) or {}).get("achieved_req_per_s")
    found = []
    rounds = lambda name: [row["achieved_req_per_s"] for row in rows if row["scenario"] == name]
    browse, bare, public = rounds("ceiling: browse"), rounds("ceiling: trivial axum handler"), rounds("ceiling: the public stack's 404")
    if not browse and last.get("browse"):
        browse = [last["browse"]["achieved_req_per_s"]]  # under k6: its achieved rate
    for name, against, note in (
        ("browse", bare, "against a bare handler (admin listener: no middleware)"),
        ("browse on the public stack", public, "against the public port's every layer around no work (not issue 27's target)"),
    ):
        if not (browse and against):
            continue
        # The ceilings take turns (ci/bench's CEILING_ROUNDS): a ratio within
        # each round, and the round with the median ratio stands for the run.
        if len(browse) == len(against) > 1:
            turns = sorted(zip(browse, against), key=lambda turn: turn[0] / turn[1])
            note += "; rounds " + ", ".join(f"{b / a:.2f}" for b, a in zip(browse, against)) + ", the median's shown"
            achieved, ceiling_rate = turns[len(turns) // 2]
        else:
            achieved, ceiling_rate = browse[-1], against[-1]
        found.append((name, achieved, ceiling_rate, note, True))
    checkin = last.get("checkin")
    if checkin and ceiling("ceiling: trivial gRPC call"):
        notes = checkin.get("notes") or ""
        shed = re.search(r"shed (\d+)", notes)
        p99 = re.search(r"server-side Redeem p99 ≈ (\d+) ms", notes)
        shed = int(shed.group(1)) if shed else 0
        p99 = int(p99.group(1)) if p99 else None
        found.append(("checkin", checkin["achieved_req_per_s"], ceiling("ceiling: trivial gRPC call"),
                      f"shed {shed}; server p99 ≤ {fmt(p99)} ms (target: none shed, < 50 ms)",
                      shed == 0 and p99 is not None and p99 < 50))
    flash = last.get("flash_sale")
    pgbench = next((row for row in rows if row["scenario"].startswith("ceiling: pgbench")), None)
    orders = re.search(r"(\d+) orders/s while stock lasted", (flash or {}).get("notes") or "")
    if orders and pgbench:
        found.append(("flash_sale", float(orders.group(1)), pgbench["achieved_req_per_s"], "orders/s while stock lasted over pgbench tps", True))
    if not found:
        return []
    lines = ["", "| knee | achieved | ceiling | ratio | target | |", "|---|---|---|---|---|---|"]
    for name, achieved, against, note, also_met in found:
        ratio = achieved / against if against else 0
        target = KNEE_TARGETS.get(name)
        verdict = "—" if target is None else f"≥ {target:.2f} " + ("met" if ratio >= target and also_met else "NOT MET")
        lines.append(f"| {name} | {fmt(achieved)} | {fmt(against)} | {ratio:.2f} | {verdict} | {note} |")
    return lines


def pair_table(rows, window_of):
    """Each scenario's p95 on the large database against the small one, pair
    by pair. Sizes are "small"/"large", or ci/bench's "small1a", "large1a",
    "large1b", "small1b", …: each size's windows in a pair are averaged, so a
    drift of the machine that is steady over the pair's four windows falls
    on both sizes alike. Beside each pair, what else moves a p95: the
    server's CPU a request (the machine's speed; the same work on either
    size) and the CPU the host took from this virtual machine (steal)."""
    by_pair = {}
    for row in rows:
        size = re.fullmatch(r"(small|large)(\d*)([ab]?)", row["size"] or "")
        if size:
            by_pair.setdefault((row["scenario"], size.group(2)), {}).setdefault(size.group(1), []).append(row)
    pairs = sorted((key, sizes) for key, sizes in by_pair.items() if {"small", "large"} <= set(sizes))
    if not pairs:
        return []

    def each(values, show):
        return ", ".join(show(v) for v in values)

    def cpu(ms):
        return "—" if ms is None else f"{ms:.3f}"

    lines = ["", "| scenario | pair | p95 small ms | p95 large ms | change | verdict "
             "| app CPU ms/request small → large | host steal % small → large |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, pair), sizes in pairs:
        p95 = {size: [row["p95_ms"] for row in sizes[size]] for size in ("small", "large")}
        small, large = (statistics.mean(p95[size]) for size in ("small", "large"))
        change = (large - small) / small if small else 0
        verdict = "flat" if change <= 0.2 else "GREW"

        def shown(size):
            return fmt_ms(statistics.mean(p95[size])) + (f" ({each(p95[size], fmt_ms)})" if len(p95[size]) > 1 else "")

        app = {size: [(row.get("cpu_ms_per_request") or {}).get("app") for row in sizes[size]] for size in sizes}
        steal = {size: [window_of.get((name, row["size"]), {}).get("steal_percent") for row in sizes[size]]
                 for size in sizes}
        lines.append(f"| {name} | {pair or '—'} | {shown('small')} | {shown('large')} | {change:+.0%} | {verdict} "
                     f"| {each(app['small'], cpu)} → {each(app['large'], cpu)} "
                     f"| {each(steal['small'], fmt)} → {each(steal['large'], fmt)} |")
    return lines


def render(results):
    rows = load(results)
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row, key) for key, _ in COLUMNS) + " |" for row in rows]
    windows = [(row, os.path.join(results, f"{row['scenario']}-{row['size']}.db.json")) for row in rows]
    windows = [(row, json.load(open(path))) for row, path in windows if os.path.exists(path)]
    lines += pair_table(rows, {(row["scenario"], row["size"]): window for row, window in windows})
    if windows:
        lines += ["", "| scenario | data | the database and the machine in the measured window (NAME.db.jsonl: every second) |",
                  "|---|---|---|"]
        lines += [f"| {row['scenario']} | {row['size']} | {dbwatch.line(window)} |" for row, window in windows]
    lines += knees(rows)
    table = "\n".join(lines) + "\n"
    open(os.path.join(results, "table.md"), "w").write(table)
    print(table)


def main(argv):
    mode, results = argv[1], argv[2]
    if mode == "k6":
        rows = load(results)
        rows.append(k6_row(*argv[3:13]))
        save(results, rows)
    elif mode == "load":
        rows = load(results)
        rows.append(load_row(*argv[3:10]))
        save(results, rows)
    elif mode == "queue":
        rows = load(results)
        rows.append(queue_row(*argv[3:10]))
        save(results, rows)
    elif mode == "refunds":
        rows = load(results)
        rows.append(refunds_row(*argv[3:9]))
        save(results, rows)
    elif mode == "watchers":
        rows = load(results)
        rows.append(watchers_row(*argv[3:8]))
        save(results, rows)
    elif mode == "memory":
        rows = load(results)
        rows.append(memory_row(argv[3], argv[4], argv[5:]))
        save(results, rows)
    elif mode == "cpu":
        cpu_snapshot(results)
    elif mode == "pgbench":
        rows = load(results)
        logs = [log for pattern in argv[5:] for log in glob.glob(pattern)]
        rows.append(pgbench_row(argv[3], argv[4], logs))
        save(results, rows)
    elif mode == "render":
        render(results)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
