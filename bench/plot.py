"""The plot in docs/benchmarks.md: consume req/s and p99 against concurrency (matplotlib)."""

from __future__ import annotations

from typing import Any

from bench import harness

PNG = harness.ROOT / "docs" / "benchmarks-consume.png"


def consume(result: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        harness.say("matplotlib is missing (pip install -e '.[bench]'); no plot")
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for shape, label, color in (("hot", "one hot customer", "tab:red"),
                                ("many", "1,000 customers", "tab:blue")):
        points = [p for p in result["points"] if p["shape"] == shape]
        clients = [p["concurrency"] for p in points]
        left.plot(clients, [p["api"]["rps"] for p in points], marker="o", color=color,
                  label=f"API, {label}")
        left.plot(clients, [(p["pgbench"] or {}).get("tps", float("nan")) for p in points],
                  marker="x", linestyle="--", color=color, label=f"pgbench (same SQL), {label}")
        right.plot(clients, [p["api"]["p99_ms"] for p in points], marker="o", color=color,
                   label=label)
    left.set(title="POST /billing/quota/consume", xlabel="concurrent clients",
             ylabel="requests (transactions) per second", xscale="log")
    right.set(title="p99 latency through the API", xlabel="concurrent clients", ylabel="ms",
              xscale="log")
    right.axhline(25, color="grey", linewidth=0.8, linestyle=":")
    for axis in (left, right):
        axis.set_xticks([1, 16, 64], labels=["1", "16", "64"])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    machine = harness.machine()
    figure.suptitle(f"{result.get('server', '')}, {machine['cpus']} cores, "
                    f"load average {machine['load_average_1_5_15'][0]} (other work included)")
    figure.tight_layout()
    figure.savefig(PNG, dpi=100)
    plt.close(figure)
    harness.say(f"wrote {PNG.relative_to(harness.ROOT)}")
