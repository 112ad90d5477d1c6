#!/usr/bin/env python3
"""Medians of bench/compare.sh's runs, and the Herald/nchan ratios against the targets.

Reads OUT/raw/<scenario>-<server>-<run>.json (one `herald bench --json` report each), writes
OUT/medians.json (read by bench/chart.py) and OUT/summary.md.

Usage: bench/summary.py OUT [--settings TEXT] [--versions TEXT]
"""

import argparse
import json
import pathlib
import re
import statistics

RAW_NAME = re.compile(r"^(?P<scenario>.+)-(?P<server>herald|nchan)-(?P<run>\d+)\.json$")
SERVERS = ("herald", "nchan")

# (key, column title, how to read it from a report, format). Loss and duplicates are the
# worst run's, every other figure the median over the runs.
METRICS = [
    ("connections", "connections", lambda r: r["connections"], "{:,.0f}"),
    ("rss_mb", "server RSS (MB)", lambda r: divided(r.get("rss_after_kib"), 1024), "{:,.1f}"),
    ("rss_per_conn_kb", "RSS/conn (KB)", lambda r: divided(r.get("rss_per_connection_bytes"), 1024), "{:.2f}"),
    ("publish_rate", "published/s", lambda r: r["publish_rate"], "{:,.0f}"),
    ("deliveries_per_sec", "deliveries/s", lambda r: r["deliveries_per_sec"], "{:,.0f}"),
    ("loss", "loss (worst run)", lambda r: r["loss"], "{:,.0f}"),
    ("p50_ms", "p50 (ms)", lambda r: r["latency_ms"]["p50"], "{:.2f}"),
    ("p99_ms", "p99 (ms)", lambda r: r["latency_ms"]["p99"], "{:.2f}"),
    ("cpu_us", "CPU/delivery (µs)", lambda r: r.get("server_cpu_us_per_delivery"), "{:.2f}"),
]
WORST = {"loss", "duplicates"}
# The connection scenarios publish one update, to check every connection is live: their
# rates, latencies and CPU per delivery mean nothing and are left out of the table.
CONNECTION_SCENARIOS = {"idle", "max"}
CONNECTION_METRICS = {"connections", "rss_mb", "rss_per_conn_kb", "loss"}


def divided(value, divisor):
    return None if value is None else value / divisor


def load(out):
    """{scenario: {server: [report, ...]}} from OUT/raw."""
    runs = {}
    for path in sorted((out / "raw").glob("*.json")):
        match = RAW_NAME.match(path.name)
        if not match:
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        runs.setdefault(match["scenario"], {}).setdefault(match["server"], []).append(report)
    return runs


def medians(runs):
    """{scenario: {server: {metric: value, "runs": n, ...}}}: medians, worst loss."""
    table = {}
    for scenario, servers in runs.items():
        for server, reports in servers.items():
            row = {
                "runs": len(reports),
                "subscribers": reports[0]["subscribers"],
                "topics": reports[0]["topics"],
                "rate": reports[0]["rate"],
                "duplicates": max(r["duplicates"] for r in reports),
                "publish_errors": max(r["publish_errors"] for r in reports),
                "connect_failures": max(r["connect_failures"] for r in reports),
            }
            for key, _, read, _ in METRICS:
                values = [v for v in map(read, reports) if v is not None]
                if not values:
                    row[key] = None
                elif key in WORST:
                    row[key] = max(values)
                else:
                    row[key] = statistics.median(values)
            table.setdefault(scenario, {})[server] = row
    return table


def scenario_order(name):
    kind, _, rate = name.partition("-")
    order = {"idle": 0, "max": 1, "fanout": 2, "topics": 3}
    return (order.get(kind, 9), float(rate) if rate.replace(".", "").isdigit() else 0.0, name)


def describe(scenario, row):
    if scenario in ("idle", "max"):
        return f"{scenario}: {row['subscribers']:,} subscribers"
    if scenario.startswith("fanout"):
        return f"fan-out: 1 topic × {row['subscribers']:,} at {row['rate']:,.0f}/s"
    if scenario == "topics":
        return f"many topics: {row['topics']:,} × 1 at {row['rate']:,.0f}/s"
    return scenario


def cell(value, fmt):
    return "n/a" if value is None else fmt.format(value)


def target_rows(table):
    """(target, herald, nchan, ratio, met) for each target."""

    def figure(scenario, key):
        rows = table.get(scenario, {})
        return tuple(rows.get(server, {}).get(key) for server in SERVERS)

    rows = []
    checks = [
        ("idle memory per connection, Herald/nchan ≤ 0.5", "idle", "rss_per_conn_kb", "{:.2f} KB", "<=", 0.5),
        ("moderate fan-out (fanout-50) p99 latency, Herald/nchan ≤ 1", "fanout-50", "p99_ms", "{:.2f} ms", "<=", 1.0),
        ("moderate fan-out (fanout-50) CPU per delivery, Herald/nchan ≤ 1", "fanout-50", "cpu_us", "{:.2f} µs", "<=", 1.0),
        ("heavy fan-out (fanout-1000) deliveries/s, Herald/nchan ≥ 2", "fanout-1000", "deliveries_per_sec", "{:,.0f}/s", ">=", 2.0),
        ("heavy fan-out (fanout-1000) CPU per delivery, Herald/nchan ≤ 0.5", "fanout-1000", "cpu_us", "{:.2f} µs", "<=", 0.5),
    ]
    for title, scenario, key, fmt, sense, bound in checks:
        herald, nchan = figure(scenario, key)
        if herald is None or nchan is None or nchan == 0:
            rows.append((title, cell(herald, fmt), cell(nchan, fmt), "n/a", "not run"))
            continue
        ratio = herald / nchan
        met = ratio <= bound if sense == "<=" else ratio >= bound
        rows.append((title, fmt.format(herald), fmt.format(nchan), f"{ratio:.2f}", "yes" if met else "**no**"))
    # Zero loss: every run of every scenario, not a median.
    totals = {
        server: (
            sum(rows.get(server, {}).get("loss") or 0 for rows in table.values()),
            sum(rows.get(server, {}).get("duplicates") or 0 for rows in table.values()),
            any(server in rows for rows in table.values()),
        )
        for server in SERVERS
    }
    loss = {server: f"{lost:,} lost, {dup:,} dup." if ran else "n/a" for server, (lost, dup, ran) in totals.items()}
    herald_lost, herald_dup, herald_ran = totals["herald"]
    rows.append((
        "zero loss (worst run of each scenario, summed)",
        loss["herald"],
        loss["nchan"],
        "",
        ("yes" if herald_lost == 0 and herald_dup == 0 else "**no**") if herald_ran else "not run",
    ))
    return rows


def markdown(table, settings, versions):
    lines = ["# Herald and nginx+nchan side by side", ""]
    if settings:
        lines += [f"Settings: `{settings}`", ""]
    if versions:
        lines += [f"Versions and machine: {versions}", ""]
    lines += [
        "Medians over the runs (loss: the worst run). Server RSS and CPU are the hub's process, "
        "or nchan's worker process; CPU is utime+stime from the first publish to the end of the "
        "drain, divided by the deliveries. The idle and max scenarios publish one update, to "
        "check every connection is live: only their connections, memory and loss are shown.",
        "",
        "| scenario | server | runs | " + " | ".join(title for _, title, _, _ in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for scenario in sorted(table, key=scenario_order):
        for server in SERVERS:
            row = table[scenario].get(server)
            if row is None:
                continue
            cells = [
                "—" if scenario in CONNECTION_SCENARIOS and key not in CONNECTION_METRICS
                else cell(row[key], fmt)
                for key, _, _, fmt in METRICS
            ]
            lines.append(f"| {describe(scenario, row)} | {server} | {row['runs']} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets", "", "| target | Herald | nchan | ratio | met |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in target_rows(table)]
    errors = [
        f"{scenario} {server}: {row['publish_errors']} publish errors, {row['connect_failures']} failed connections (worst run)"
        for scenario in sorted(table, key=scenario_order)
        for server, row in table[scenario].items()
        if row["publish_errors"] or row["connect_failures"]
    ]
    if errors:
        lines += ["", "Errors:", ""] + [f"- {error}" for error in errors]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--settings", default="")
    parser.add_argument("--versions", default="")
    args = parser.parse_args()
    table = medians(load(args.out))
    (args.out / "medians.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    (args.out / "summary.md").write_text(markdown(table, args.settings, args.versions))


if __name__ == "__main__":
    main()
