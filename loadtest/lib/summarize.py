"""Appends one row to a run's results table (markdown and JSON) from a k6
--summary-export file: scenario, offered rate, achieved requests/s,
p50/p95/p99, error rate, k6's own CPU, and the invariants' verdict.

usage: summarize.py RESULTS_DIR SCENARIO RATE SUMMARY_JSON K6_CPU_SECONDS WALL_SECONDS INVARIANTS
"""
import json
import os
import sys

results, scenario, rate, summary_path, k6_cpu, wall, invariants = sys.argv[1:8]
metrics = json.load(open(summary_path))["metrics"]


def trend(name):
    m = metrics.get(name) or {}
    return {q: m.get(f"p({q})") for q in ("50", "95", "99")}


http_reqs = (metrics.get("http_reqs") or {}).get("rate", 0)
grpc_reqs = (metrics.get("grpc_reqs") or {}).get("rate", 0)
latency = trend("http_req_duration") if http_reqs >= grpc_reqs else trend("grpc_req_duration")
failed = (metrics.get("http_req_failed") or {}).get("value")
row = {
    "scenario": scenario,
    "offered_per_s": float(rate),
    "achieved_req_per_s": round(http_reqs + grpc_reqs, 1),
    "p50_ms": latency["50"],
    "p95_ms": latency["95"],
    "p99_ms": latency["99"],
    "http_error_rate": failed,
    "k6_cpu_percent": round(100 * float(k6_cpu) / max(float(wall), 1e-9), 1),
    "invariants": invariants,
}
table_json = os.path.join(results, "table.json")
rows = json.load(open(table_json)) if os.path.exists(table_json) else []
rows.append(row)
json.dump(rows, open(table_json, "w"), indent=2)


def fmt(value):
    return "—" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))


with open(os.path.join(results, "table.md"), "w") as md:
    md.write("| scenario | offered/s | achieved req/s | p50 ms | p95 ms | p99 ms | HTTP errors | k6 CPU % | invariants |\n")
    md.write("|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        md.write("| " + " | ".join(fmt(r[k]) for k in row) + " |\n")
print(open(os.path.join(results, "table.md")).read())
