#!/usr/bin/env python3
"""Nexmark: Watershed vs Kafka Streams vs Flink over the same Kafka topic (driven by scripts/nexmark-compare).

Two phases, each system run one after another (never concurrently) on this machine:

1. Correctness: load M events into a check topic, run every query in every system with --output,
   normalise and compare Watershed's results with each peer's: MATCH or DIFF (with details).
2. Throughput: load N events, run every query in every system without --output (results are only
   counted), and print query x system x events per CPU-second plus Watershed's ratio to each peer.

Normalisation (the documented convention differences, handled here explicitly):
- Rows are reduced to the contract's fields for the query (docs/nexmark.md); extra fields are ignored,
  a missing field is a DIFF. Values are compared as JSON values (integers exactly).
- Append-only queries (q0-q3, q5, q7, q8) compare as multisets of rows.
- Updating queries (q4 per category, q6 per seller) compare the FINAL row per key: each system writes
  its updates in order (Kafka Streams every aggregate change, Flink its INSERT/UPDATE_AFTER rows, with
  retractions dropped), and the last row written for a key is its final value.
- Queries a peer cannot express (q6 in Flink SQL) print NEXMARK ... unsupported=<reason>, shown as
  "unsupported" in both phases.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter

FIELDS = {
    "q0": ["auction", "bidder", "price", "dateTime"],
    "q1": ["auction", "bidder", "price", "dateTime"],
    "q2": ["auction", "price"],
    "q3": ["name", "city", "state", "id"],
    "q4": ["category", "count", "sum"],
    "q5": ["window_start", "window_end", "auction", "count"],
    "q6": ["seller", "count", "sum"],
    "q7": ["window_start", "auction", "bidder", "price", "dateTime"],
    "q8": ["id", "name", "window_start"],
}
# Updating queries: result key -> final row.
UPDATING_KEY = {"q4": "category", "q6": "seller"}
SYSTEMS = ["watershed", "kafka-streams", "flink"]
PEERS = ["kafka-streams", "flink"]


def command(system, jars, nexmark_bin, query, brokers, topic, events, output):
    if system == "watershed":
        cmd = [nexmark_bin, "run", "--query", query, "--source", "kafka", "--brokers", brokers]
    else:
        cmd = ["java", "-jar", jars[system], "--query", query, "--brokers", brokers]
    cmd += ["--topic", topic, "--events", str(events)]
    if output:
        cmd += ["--output", output]
    return cmd


def run(system, cmd, log):
    """Runs one system on one query; returns the parsed NEXMARK line as a dict (or {'error': ...})."""
    started = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + p.stdout + "\n--- stderr ---\n" + p.stderr)
    for line in p.stdout.splitlines():
        if line.startswith("NEXMARK "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
            if p.returncode != 0 and "unsupported" not in fields:
                fields["error"] = f"exit {p.returncode}"
            return fields
    tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"exit {p.returncode} after {time.time() - started:.0f}s, no NEXMARK line: {tail} (log {log})"}


def normalise(query, path):
    """The comparable form of a result file: a Counter of row tuples."""
    fields = FIELDS[query]
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            missing = [k for k in fields if k not in obj]
            if missing:
                raise ValueError(f"{path}:{n}: row lacks {missing}: {line}")
            rows.append(tuple(obj[k] for k in fields))
    key = UPDATING_KEY.get(query)
    if key:
        final = {}
        for r in rows:
            final[r[fields.index(key)]] = r
        rows = list(final.values())
    return Counter(rows)


def compare(query, ours, theirs):
    """(ok, detail) for Watershed's rows vs a peer's."""
    if ours == theirs:
        return True, f"{sum(ours.values())} rows"
    only_ours = ours - theirs
    only_theirs = theirs - ours
    fields = FIELDS[query]

    def show(c):
        return "; ".join(json.dumps(dict(zip(fields, r))) for r in sorted(c.elements(), key=str)[:5])

    return False, (
        f"watershed {sum(ours.values())} rows, peer {sum(theirs.values())} rows; "
        f"only in watershed ({sum(only_ours.values())}): {show(only_ours)} | "
        f"only in peer ({sum(only_theirs.values())}): {show(only_theirs)}"
    )


def load(nexmark_bin, brokers, topic, events, rate=None):
    print(f"loading {events} events into {topic} (rate {rate or 'default'}) ...", flush=True)
    extra = ["--rate", str(rate)] if rate else []
    p = subprocess.run(
        [nexmark_bin, "load", "--brokers", brokers, "--topic", topic, "--events", str(events)] + extra,
        stdout=subprocess.PIPE, text=True,
    )
    if p.returncode != 0 or "LOADED" not in p.stdout:
        sys.exit(f"nexmark load failed (exit {p.returncode}): {p.stdout}")
    print(p.stdout.strip(), flush=True)


def correctness(a, jars, queries, workdir):
    load(a.nexmark_bin, a.brokers, a.check_topic, a.check_events, a.check_rate)
    print(f"\n== correctness: {a.check_events} events, Watershed vs each peer ==", flush=True)
    failures = 0
    for q in queries:
        outputs, res = {}, {}
        for s in SYSTEMS:
            out = os.path.join(workdir, f"check-{q}-{s}.jsonl")
            if os.path.exists(out):
                os.remove(out)
            cmd = command(s, jars, a.nexmark_bin, q, a.brokers, a.check_topic, a.check_events, out)
            res[s] = run(s, cmd, os.path.join(workdir, f"check-{q}-{s}.log"))
            outputs[s] = out
        if "error" in res["watershed"] or "unsupported" in res["watershed"]:
            print(f"{q:3} watershed   ERROR {res['watershed']}")
            failures += 1
            continue
        ours = normalise(q, outputs["watershed"])
        for peer in PEERS:
            r = res[peer]
            if "unsupported" in r:
                print(f"{q:3} vs {peer:13} unsupported ({r['unsupported']})")
            elif "error" in r:
                print(f"{q:3} vs {peer:13} ERROR {r['error']}")
                failures += 1
            else:
                ok, detail = compare(q, ours, normalise(q, outputs[peer]))
                print(f"{q:3} vs {peer:13} {'MATCH' if ok else 'DIFF'} {detail}", flush=True)
                failures += 0 if ok else 1
    return failures


def throughput(a, jars, queries, workdir):
    load(a.nexmark_bin, a.brokers, a.topic, a.events)
    print(f"\n== throughput: {a.events} events from Kafka (JSON), one system at a time ==", flush=True)
    results = {}
    for q in queries:
        for s in SYSTEMS:
            cmd = command(s, jars, a.nexmark_bin, q, a.brokers, a.topic, a.events, None)
            r = run(s, cmd, os.path.join(workdir, f"bench-{q}-{s}.log"))
            results[(q, s)] = r
            shown = r.get("events_per_cpu_s") or r.get("unsupported") and "unsupported" or r.get("error")
            print(f"  {q} {s:13} {shown}  (cpu_s={r.get('cpu_s', '-')} wall_s={r.get('wall_s', '-')} "
                  f"results={r.get('results', '-')})", flush=True)

    def cell(r):
        if "unsupported" in r:
            return "unsupported"
        if "error" in r:
            return "error"
        return f"{float(r['events_per_cpu_s']):,.0f}"

    header = ["query", "watershed ev/CPU-s", "kafka-streams ev/CPU-s", "flink ev/CPU-s",
              "ws / kafka-streams", "ws / flink"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    bench = []
    for q in queries:
        ws = results[(q, "watershed")]
        row = [q] + [cell(results[(q, s)]) for s in SYSTEMS]
        for peer in PEERS:
            p = results[(q, peer)]
            if "unsupported" in p:
                row.append("unsupported")
            elif "error" in p or "error" in ws or "unsupported" in ws:
                row.append("-")
            else:
                ratio = float(ws["events_per_cpu_s"]) / float(p["events_per_cpu_s"])
                row.append(f"{ratio:.1f}x")
                bench.append(f"BENCH name=nexmark_{q}_vs_{peer.replace('-', '_')} metric=ratio value={ratio:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    print("\n" + "\n".join(lines))
    print("\n".join(bench))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--check-events", type=int, default=50_000)
    # The generator's default rate (10 M events/s of event time) puts 50,000 events into one 10 s window;
    # a low rate spreads the check input over many windows, so window assignment and firing are compared.
    ap.add_argument("--check-rate", type=int, default=1000)
    ap.add_argument("--queries", default="q0,q1,q2,q3,q4,q5,q6,q7,q8")
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="nexmark-events")
    ap.add_argument("--check-topic", default="nexmark-check")
    ap.add_argument("--nexmark-bin", required=True)
    ap.add_argument("--ks-jar", required=True)
    ap.add_argument("--flink-jar", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    a = ap.parse_args()
    queries = [q.strip() for q in a.queries.split(",") if q.strip()]
    unknown = [q for q in queries if q not in FIELDS]
    if unknown:
        sys.exit(f"unknown queries {unknown}")
    jars = {"kafka-streams": a.ks_jar, "flink": a.flink_jar}
    os.makedirs(a.workdir, exist_ok=True)
    failures = 0 if a.skip_check else correctness(a, jars, queries, a.workdir)
    if not a.skip_bench:
        throughput(a, jars, queries, a.workdir)
    if failures:
        print(f"\n{failures} correctness check(s) failed; logs and outputs in {a.workdir}")
        sys.exit(1)


if __name__ == "__main__":
    main()
