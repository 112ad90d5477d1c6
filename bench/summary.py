#!/usr/bin/env python3
"""Medians of bench/compare.sh's runs, and the Herald/nchan ratio of each goal of issue 15.

Reads OUT/raw/<scenario>-<server>-<run>.json (one `herald bench --json` report each, all
kept), writes OUT/medians.json (read by bench/chart.py) and OUT/summary.md: every scenario's
medians, the fan-out rate sweep with write calls per delivery, and the goal table.

Usage: bench/summary.py OUT [--settings TEXT] [--workers TEXT] [--versions TEXT]
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
    ("writes_per_delivery", "writes/delivery", lambda r: r.get("server_writes_per_delivery"), "{:.3f}"),
    ("drained_per_conn_kb", "RSS/conn drained (KB)",
     lambda r: divided(r.get("rss_drained_per_connection_bytes"), 1024), "{:.2f}"),
]
WORST = {"loss", "duplicates"}
# The connection scenarios publish one update, to check every connection is live: their
# rates, latencies and CPU per delivery mean nothing and are left out of the table.
CONNECTION_SCENARIOS = ("idle", "max")
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


def is_connection_scenario(name):
    return name.split("-")[0] in CONNECTION_SCENARIOS


def sweep_rate(name):
    """The rate of an HTTP/1.1 fan-out scenario (fanout-<rate>), else None."""
    kind, _, rate = name.partition("-")
    return float(rate) if kind == "fanout" and rate.replace(".", "").isdigit() else None


def drained_history(name):
    """N of Herald's fan-out with a small history (fanout-1000-history<N>, DRAINED_HISTORY),
    else None."""
    prefix = "fanout-1000-history"
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def scenario_order(name):
    kind = name.split("-")[0]
    order = {"idle": 0, "max": 1, "fanout": 2, "topics": 3}
    rate = sweep_rate(name)
    return (order.get(kind, 9), rate if rate is not None else float("inf"), name)


def describe(scenario, row):
    if scenario.startswith("idle"):
        mode = scenario.partition("-")[2] or "h1"
        if mode.startswith("h2") and mode.endswith("-1"):
            return f"idle over {mode[:-2]}, 1 stream per connection: {row['subscribers']:,} subscribers"
        return f"idle over {mode}: {row['subscribers']:,} subscribers"
    if scenario == "max":
        return f"max: {row['subscribers']:,} subscribers"
    if scenario.startswith("fanout"):
        over = " over h2c" if scenario.startswith("fanout-h2c") else ""
        history = drained_history(scenario)
        kept = f", --history-size {history}" if history is not None else ""
        return f"fan-out{over}: 1 topic × {row['subscribers']:,} at {row['rate']:,.0f}/s{kept}"
    if scenario.startswith("topics"):
        store = scenario.partition("-")[2] or "memory"
        return f"many topics ({store}): {row['topics']:,} × 1 at {row['rate']:,.0f}/s"
    return scenario


def cell(value, fmt):
    return "n/a" if value is None else fmt.format(value)


def target_rows(table):
    """(goal, herald, nchan, ratio, met) for each goal of issue 15."""

    def figure(scenario, key, server):
        return table.get(scenario, {}).get(server, {}).get(key)

    rows = []
    kb, ms, us, per_s = "{:.2f} KB", "{:.2f} ms", "{:.2f} µs", "{:,.0f}/s"
    # (goal, Herald's scenario, nchan's scenario, figure, format, sense, bound)
    checks = [
        ("idle memory per subscriber, HTTP/1.1 first request ≤ 0.5", "idle-h1", "idle-h1", "rss_per_conn_kb", kb, "<=", 0.5),
        ("idle memory per subscriber, HTTP/1.1 after another request ≤ 0.5", "idle-h1-reuse", "idle-h1-reuse", "rss_per_conn_kb", kb, "<=", 0.5),
        ("idle memory per subscriber, h2c ≤ 0.5", "idle-h2c", "idle-h2c", "rss_per_conn_kb", kb, "<=", 0.5),
        ("idle memory per subscriber, TLS + HTTP/2 ≤ 0.5", "idle-h2-tls", "idle-h2-tls", "rss_per_conn_kb", kb, "<=", 0.5),
        ("fan-out 1,000 × 50/s: p99 ≤ 1", "fanout-50", "fanout-50", "p99_ms", ms, "<=", 1.0),
        ("fan-out 1,000 × 50/s: CPU per delivery ≤ 1", "fanout-50", "fanout-50", "cpu_us", us, "<=", 1.0),
        ("fan-out 1,000 × 1,000/s offered: deliveries/s ≥ 2", "fanout-1000", "fanout-1000", "deliveries_per_sec", per_s, ">=", 2.0),
        ("fan-out 1,000 × 1,000/s offered: CPU per delivery ≤ 0.5", "fanout-1000", "fanout-1000", "cpu_us", us, "<=", 0.5),
        ("fan-out over h2c, 1,000 × 1,000/s offered: deliveries/s ≥ 1", "fanout-h2c-1000", "fanout-h2c-1000", "deliveries_per_sec", per_s, ">=", 1.0),
        ("10,000 topics × 1 at 5,000/s, CPU per publish, `--store memory:` ≤ 0.7", "topics-memory", "topics-memory", "cpu_us", us, "<=", 0.7),
        ("the same with the default redb store (nchan: memory) ≤ 1.2", "topics-redb", "topics-memory", "cpu_us", us, "<=", 1.2),
    ]
    for title, herald_scenario, nchan_scenario, key, fmt, sense, bound in checks:
        herald = figure(herald_scenario, key, "herald")
        nchan = figure(nchan_scenario, key, "nchan")
        if herald is None or nchan is None or nchan == 0:
            missing = "not run" if herald is None and nchan is None else (
                "no Herald result" if herald is None else "no nchan result (runs failed?)")
            rows.append((title, cell(herald, fmt), cell(nchan, fmt), "n/a", missing))
            continue
        ratio = herald / nchan
        met = ratio <= bound if sense == "<=" else ratio >= bound
        rows.append((title, fmt.format(herald), fmt.format(nchan), f"{ratio:.2f}", "yes" if met else "**no**"))
    # Memory after the heavy fan-out drained, against the idle figure of the same run (the
    # connections held before publishing): each server against itself.
    drained = {}
    for server in SERVERS:
        idle = figure("fanout-1000", "rss_per_conn_kb", server)
        after = figure("fanout-1000", "drained_per_conn_kb", server)
        drained[server] = (idle, after)
    idle, after = drained["herald"]
    nchan_idle, nchan_after = drained["nchan"]
    nchan_text = "n/a" if not nchan_idle or nchan_after is None else (
        f"{nchan_after:.2f} KB ({nchan_after / nchan_idle:.2f}× {nchan_idle:.2f})")
    if not idle or after is None:
        rows.append(("after the 1,000/s fan-out drained: memory per subscriber ≤ 1.5× idle",
                     "n/a", nchan_text, "n/a", "not run"))
    else:
        ratio = after / idle
        rows.append(("after the 1,000/s fan-out drained: memory per subscriber ≤ 1.5× idle",
                     f"{after:.2f} KB ({ratio:.2f}× {idle:.2f})", nchan_text,
                     f"{ratio:.2f} (Herald drained/idle)", "yes" if ratio <= 1.5 else "**no**"))
    # The same with a history as small as nchan's (DRAINED_HISTORY): Herald against itself.
    for name in sorted(name for name in table if drained_history(name) is not None):
        idle = figure(name, "rss_per_conn_kb", "herald")
        after = figure(name, "drained_per_conn_kb", "herald")
        title = (f"the same, Herald with --history-size {drained_history(name)} "
                 "(nchan keeps 10 per channel)")
        if not idle or after is None:
            rows.append((title, "n/a", "", "n/a", "not run"))
        else:
            ratio = after / idle
            rows.append((title, f"{after:.2f} KB ({ratio:.2f}× {idle:.2f})", "",
                         f"{ratio:.2f} (Herald drained/idle)", "yes" if ratio <= 1.5 else "**no**"))
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


def sweep_lines(table):
    """The HTTP/1.1 fan-out at each rate: where batching starts (writes per delivery)."""
    rates = sorted((sweep_rate(name), name) for name in table if sweep_rate(name) is not None)
    if not rates:
        return []
    lines = [
        "", "## Rate sweep (1 topic, HTTP/1.1)", "",
        "| rate (msgs/s) | server | deliveries/s | p99 (ms) | CPU/delivery (µs) | writes/delivery |",
        "|---|---|---|---|---|---|",
    ]
    for rate, name in rates:
        for server in SERVERS:
            row = table[name].get(server)
            if row is None:
                continue
            lines.append(
                f"| {rate:,.0f} | {server} | {cell(row['deliveries_per_sec'], '{:,.0f}')} | "
                f"{cell(row['p99_ms'], '{:.2f}')} | {cell(row['cpu_us'], '{:.2f}')} | "
                f"{cell(row['writes_per_delivery'], '{:.3f}')} |"
            )
    return lines


def markdown(table, settings, workers, versions):
    lines = ["# Herald and nginx+nchan side by side", ""]
    if settings:
        lines += [f"Settings: `{settings}`", ""]
    if workers:
        lines += [f"Workers: {workers}", ""]
    if versions:
        lines += [f"Versions and machine: {versions}", ""]
    lines += [
        "Medians over the runs (loss: the worst run); every run's JSON is in raw/. Server RSS, "
        "CPU and write calls are the hub's process, or nginx's master and workers summed; CPU "
        "is utime+stime from the first publish to the end of the drain, divided by the "
        "deliveries (with one subscriber per topic, a delivery is a publish); write calls are "
        "`syscw` from /proc/PID/io over the same span. The idle and max scenarios publish one "
        "update, to check every connection is live: only their connections, memory and loss "
        "are shown.",
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
                "—" if is_connection_scenario(scenario) and key not in CONNECTION_METRICS
                else cell(row[key], fmt)
                for key, _, _, fmt in METRICS
            ]
            lines.append(f"| {describe(scenario, row)} | {server} | {row['runs']} | " + " | ".join(cells) + " |")
    lines += sweep_lines(table)
    lines += ["", "## Goals (issue 15): Herald/nchan", "", "| goal | Herald | nchan | ratio | met |", "|---|---|---|---|---|"]
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
    parser.add_argument("--workers", default="")
    parser.add_argument("--versions", default="")
    args = parser.parse_args()
    table = medians(load(args.out))
    (args.out / "medians.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    (args.out / "summary.md").write_text(markdown(table, args.settings, args.workers, args.versions))


if __name__ == "__main__":
    main()
