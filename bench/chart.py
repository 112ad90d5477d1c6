#!/usr/bin/env python3
"""Fan-out chart of bench/compare.sh: deliveries/s and p99 latency against the offered rate.

Reads OUT/medians.json (written by bench/summary.py), writes OUT/chart.png: two subplots, one
line per server, the fan-out scenarios (1 topic, the same subscribers) at each rate; the
deliveries subplot also shows what was offered (rate × subscribers).

Usage: bench/chart.py OUT
"""

import json
import re
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

STYLE = {"herald": ("tab:blue", "o", "Herald"), "nchan": ("tab:orange", "s", "nginx+nchan")}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    out = pathlib.Path(sys.argv[1])
    table = json.loads((out / "medians.json").read_text())
    # The HTTP/1.1 rate sweep (fanout-<rate>) only: fanout-h2c-<rate> and the DRAINED_HISTORY
    # run (fanout-<rate>-history<N>) are rows of their own.
    fanout = {name: rows for name, rows in table.items()
              if re.fullmatch(r"fanout-\d+", name)}
    if not fanout:
        sys.exit("chart.py: no fan-out scenario in medians.json")

    figure, (deliveries, latency) = plt.subplots(1, 2, figsize=(11, 4.5))
    offered = {}
    subscribers = set()
    for server, (color, marker, label) in STYLE.items():
        points = sorted(
            (rows[server]["rate"], rows[server]) for rows in fanout.values() if server in rows
        )
        if not points:
            continue
        rates = [rate for rate, _ in points]
        for rate, row in points:
            offered[rate] = rate * row["subscribers"]
            subscribers.add(row["subscribers"])
        deliveries.plot(rates, [row["deliveries_per_sec"] for _, row in points],
                        color=color, marker=marker, label=label)
        latency.plot(rates, [row["p99_ms"] for _, row in points],
                     color=color, marker=marker, label=label)
    rates = sorted(offered)
    deliveries.plot(rates, [offered[rate] for rate in rates], color="grey", linestyle="--",
                    label="offered", zorder=1)

    who = ", ".join(f"{n:,}" for n in sorted(subscribers))
    deliveries.set_title(f"Deliveries/s (1 topic × {who} subscribers)")
    deliveries.set_ylabel("deliveries per second")
    latency.set_title("p99 latency, publish to delivery")
    latency.set_ylabel("milliseconds")
    for axes in (deliveries, latency):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("updates published per second (offered)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    # Plain numbers (after set_xscale/set_yscale, which reset the formatters); the rates run on
    # the x axis.
    plain = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 10 else f"{value:g}")
    for axes in (deliveries, latency):
        axes.set_xticks(rates)
        axes.xaxis.set_major_formatter(plain)
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(NullFormatter())
    figure.tight_layout()
    figure.savefig(out / "chart.png", dpi=120)


if __name__ == "__main__":
    main()
