#!/usr/bin/env python3
"""Check the performance targets of bench/README.md against one set of measurements.

Usage:
    python3 bench/targets.py --sweep results/bench_sweep.json --trace results/bench_trace.json \\
        --compare results/compare.json > results/targets.md

Reads the Google Benchmark JSON of bench_sweep and bench_trace (run with
--benchmark_repetitions; the median aggregate is used when present) and the JSON written by
compare_pytorch.py, and prints one Markdown row per target: what was measured, the bound, and
met or missed (with the factor by which it was missed). Standard library only.
"""

import argparse
import json
import re

KERNELS = ("BM_energy_value", "BM_energy_value_and_gradient", "BM_mm_step", "BM_softmax_step")


def medians(path):
    """run_name -> entry: the median aggregate, or the single measurement without repetitions."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    rows = {}
    for entry in data.get("benchmarks", []):
        if entry.get("error_occurred"):
            continue
        name = re.sub(r"/min_time:[0-9.]+", "", entry.get("run_name", entry["name"]))
        if entry.get("run_type") == "aggregate":
            if entry.get("aggregate_name") == "median":
                rows[name] = entry
        else:
            rows.setdefault(name, entry)
    return rows, data.get("context", {})


def seconds(entry):
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[entry.get("time_unit", "ns")]
    return entry["cpu_time"] * unit


def verdict(value, bound, at_most):
    """'met' or 'missed by x.xx times', for value <= bound (at_most) or value >= bound."""
    ok = value <= bound if at_most else value >= bound
    if ok:
        return "met"
    factor = value / bound if at_most else bound / value
    return "missed (by %.2fx)" % factor


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--trace", required=True)
    parser.add_argument("--compare", required=True)
    args = parser.parse_args()

    sweep, context = medians(args.sweep)
    trace, _ = medians(args.trace)
    with open(args.compare, encoding="utf-8") as f:
        compare = {row["row"] + " | " + row["pytorch"]: row for row in json.load(f)["rows"]}

    out = ["| target | measured | bound | result |", "|---|---|---|---|"]

    def row(target, measured, bound, result):
        out.append("| %s | %s | %s | %s |" % (target, measured, bound, result))

    # 1. The 12-layer forward with a trace, against the same forward without one.
    plain = seconds(trace["BM_stack_trace<float>/n:1024/trace:0"])
    for level, label in ((1, "every layer"), (2, "every step")):
        ratio = seconds(trace["BM_stack_trace<float>/n:1024/trace:%d" % level]) / plain
        row("12 layers, n = 1024, d = 100, float: trace %s / no trace" % label,
            "%.3f" % ratio, "<= 1.15", verdict(ratio, 1.15, True))
    for label in ("every layer", "every step"):
        key = "12 layers, trace %s, n=1024 | torch pair-index energies %s" % (label, label)
        if key in compare:
            speedup = 1.0 / compare[key]["ratio"]
            row("12 layers, n = 1024, trace %s: pair-index PyTorch / unfold" % label,
                "%.0fx" % speedup, ">= 100x", verdict(speedup, 100.0, False))

    # 2. The reference attention layer and the MM step against PyTorch at n = 512.
    for key, label in (
            ("reference attention, 1 head, n=512 | nn.MultiheadAttention",
             "reference attention (1 head) / nn.MultiheadAttention"),
            ("reference attention, 4 heads, n=512 | nn.MultiheadAttention",
             "reference attention (4 heads) / nn.MultiheadAttention"),
            ("MM step vs MultiheadAttention, n=512 | nn.MultiheadAttention",
             "MM step / nn.MultiheadAttention (1 head)"),
            ("MM step, n=512 | torch MM step", "MM step / the same step in torch")):
        if key in compare:
            ratio = compare[key]["ratio"]
            row("n = 512, d = 100, float: " + label, "%.2f" % ratio, "<= 0.8",
                verdict(ratio, 0.8, True))

    # 3. Fraction of the FMA peak at n >= 1024, and 5. time per n^2 d across n, per kernel.
    for scalar in ("float", "double"):
        for kernel in KERNELS:
            fractions, per_n2d = [], {}
            for n in (128, 512, 1024, 2048, 4096, 8192):
                entry = sweep.get("%s<%s>/n:%d/d:100/path:0" % (kernel, scalar, n))
                if entry is None:
                    continue
                if n >= 1024:
                    fractions.append(entry["peak_fraction"])
                per_n2d[n] = entry["ns_per_n2d"]
            if fractions:
                worst = min(fractions)
                row("%s, %s, d = 100, n >= 1024: fraction of FMA peak" % (kernel, scalar),
                    "%.0f-%.0f %%" % (100 * worst, 100 * max(fractions)), ">= 65 %",
                    verdict(worst, 0.65, False))
            if len(per_n2d) > 1:
                spread = max(per_n2d.values()) / min(per_n2d.values())
                slowest = max(per_n2d, key=per_n2d.get)
                # Without n = 128, where the O(n d^2) projection outweighs the pairs at d = 100.
                long = [t for n, t in per_n2d.items() if n >= 512]
                row("%s, %s, d = 100: time per n^2 d, max / min over n = 128..8192"
                    % (kernel, scalar), "%.2f (slowest at n = %d; %.2f over n >= 512)"
                    % (spread, slowest, max(long) / min(long)),
                    "<= 1.5", verdict(spread, 1.5, True))

    # 4. Extra memory of value and gradient at n = 8192.
    for scalar in ("float", "double"):
        entry = sweep.get("BM_energy_value_and_gradient<%s>/n:8192/d:100/path:0" % scalar)
        if entry is not None:
            mib = entry["extra_bytes"] / 2 ** 20
            row("value + gradient, n = 8192, d = 100, %s: peak extra memory" % scalar,
                "%.1f MiB" % mib, "<= 64 MiB", verdict(mib, 64.0, True))

    peaks = ", ".join("%s %.1f GFLOP/s" % (t, float(context[k]))
                      for t, k in (("float", "fma_peak_gflops_float"),
                                   ("double", "fma_peak_gflops_double")) if k in context)
    print("FMA peak measured by bench_sweep at start-up: %s." % peaks)
    print()
    print("\n".join(out))


if __name__ == "__main__":
    main()
