"""The benchmark's PNG: throughput beside the baseline, latency percentiles, scaling.

Needs matplotlib (the `bench` extra); the numbers come from bench.report.plot_data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import plot_data

_COLORS = {"baseline": "#888888", "civicstream": "#1f77b4", "step alone": "#9ecae1"}


def draw(results: dict[str, Any], path: Path) -> Path | None:
    """Write the PNG; None (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    data = plot_data(results)
    panels = [name for name in ("throughput", "latency", "stations", "workers") if name in data]
    if not panels:
        return None
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.8 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, name in zip(flat, panels, strict=False):
        values = data[name]
        if name == "throughput":
            colors = [_COLORS.get(label, "#ff7f0e") for label in values["labels"]]
            bars = ax.bar(values["labels"], values["per_s"], color=colors)
            ax.set_ylim(0, max(values["per_s"]) * 1.18)
            base = values["per_s"][0]
            ax.axhline(base, color="#555555", linestyle="--", linewidth=1)
            for bar, rate in zip(bars, values["per_s"], strict=True):
                ax.annotate(
                    f"{rate:,.0f}\n×{rate / base:.2f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
            ax.set_ylabel("readings/s")
            ax.set_title("Throughput (same run, same topic)")
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        elif name == "latency":
            width = 0.25
            for index, (key, series) in enumerate(values["percentiles"].items()):
                xs = [i + (index - 1) * width for i in range(len(values["rates"]))]
                ax.bar(xs, [v or 0 for v in series], width, label=key)
            ax.set_xticks(range(len(values["rates"])), values["rates"], fontsize=8)
            ax.set_ylabel("seconds")
            ax.set_title("Event-to-store latency (readings rows)")
            ax.legend()
        elif name == "stations":
            labels = [f"{s:,}" for s in values["stations"]]
            ax.bar(labels, values["per_s"], color="#1f77b4")
            ax.set_xlabel("stations")
            ax.set_ylabel("readings/s (bars)")
            twin = ax.twinx()
            twin.plot(labels, values["bytes_per_station_pollutant"], "o-", color="#d62728")
            twin.set_ylabel("state bytes per station × pollutant (line)")
            twin.set_ylim(bottom=0)
            ax.set_title("Scaling: stations")
        else:
            labels = [f"{w} worker{'s' if w > 1 else ''}" for w in values["workers"]]
            bars = ax.bar(labels, values["per_s"], color="#2ca02c")
            ax.set_ylim(0, max(values["per_s"]) * 1.15)
            one = values["per_s"][0]
            for bar, rate in zip(bars, values["per_s"], strict=True):
                ax.annotate(
                    f"{rate:,.0f} (×{rate / one:.2f})",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
            ax.set_ylabel("readings/s (worker stage)")
            ax.set_title("Scaling: workers on 2 partitions")
    fig.suptitle(f"civicstream benchmark {results['when']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
