#!/usr/bin/env python3
"""Turn Google Benchmark JSON output of the unfold benchmarks into Markdown tables.

Usage:
    python3 bench/summarise.py results/*.json > table.md
    python3 bench/summarise.py --peak-float 166 --peak-double 83 bench_attention.json
    python3 bench/summarise.py --filter 'd:100/path:0' results/bench_sweep.json

Each benchmark becomes one row: its median CPU time (the median aggregate when the run used
--benchmark_repetitions, otherwise the single measurement), the coefficient of variation of
the repetitions, the GFLOPS counter, that rate as a fraction of the single-core FMA peak of its
scalar type, and its other counters. CPU time, not wall time, because Google Benchmark
computes its rate counters from CPU time, and because on a shared machine it is the less
disturbed of the two when another process takes the core. The peak is the median GFLOPS of
BM_fma_peak<float> and BM_fma_peak<double> found in any of the input files (bench_baseline),
unless given on the command line. Standard library only.
"""

import argparse
import json
import re
import sys

SI_PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
# Counters that are not rates of work: shown as plain numbers.
PLAIN_COUNTERS = {"lanes", "energy_evals", "trace_entries", "streamed", "peak_fraction",
                  "startup_peak_GFLOPS"}
# Fields of a benchmark entry that are not user counters.
STANDARD_FIELDS = {
    "name", "family_index", "per_family_instance_index", "run_name", "run_type",
    "repetitions", "repetition_index", "threads", "iterations", "real_time", "cpu_time",
    "time_unit", "aggregate_name", "aggregate_unit", "error_occurred", "error_message",
    "label", "bytes_per_second", "items_per_second",
}


def si(value):
    """3 significant digits with an SI prefix: 1.23M."""
    for scale, prefix in SI_PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.3g}"


def format_time(value, unit):
    """A time in the unit that keeps 1 to 999 before the point."""
    seconds = value * TIME_UNITS.get(unit, 1e-9)
    for name, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {name}"
    return f"{seconds / 1e-9:.3g} ns"


def split_name(run_name):
    """'BM_x<float>/n:32/min_time:0.050' -> ('BM_x', 'float', 'n=32')."""
    parts = run_name.split("/")
    match = re.fullmatch(r"(\w+)(?:<(\w+)>)?", parts[0])
    family, scalar = (match.group(1), match.group(2) or "") if match else (parts[0], "")
    args = [p.replace(":", "=") for p in parts[1:]
            if not p.startswith(("min_time:", "repeats:", "iterations:", "real_time"))]
    return family, scalar, " ".join(args)


def counters(entry):
    return {k: v for k, v in entry.items()
            if k not in STANDARD_FIELDS and isinstance(v, (int, float))}


def collect(paths):
    """Per input file: its executable name and its rows, in the order the file lists them."""
    files = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        context = data.get("context", {})
        rows = {}
        for entry in data.get("benchmarks", []):
            if entry.get("error_occurred"):
                continue
            run_name = entry.get("run_name", entry["name"])
            row = rows.setdefault(run_name, {"measured": None, "median": None, "cv": None})
            if entry.get("run_type") == "aggregate":
                if entry.get("aggregate_name") == "median":
                    row["median"] = entry
                elif entry.get("aggregate_name") == "cv":
                    row["cv"] = entry
            elif row["measured"] is None:
                row["measured"] = entry
        executable = context.get("executable", path).rsplit("/", 1)[-1]
        files.append((executable, context, rows))
    return files


def find_peaks(files):
    peaks = {}
    for _, _, rows in files:
        for run_name, row in rows.items():
            family, scalar, _ = split_name(run_name)
            entry = row["median"] or row["measured"]
            if family == "BM_fma_peak" and entry and "GFLOPS" in entry:
                peaks[scalar] = entry["GFLOPS"]
    return peaks


def table(rows, peaks):
    lines = [
        "| benchmark | type | args | median CPU time | CV | GFLOP/s | of FMA peak | counters |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for run_name, row in rows.items():
        entry = row["median"] or row["measured"]
        if entry is None:
            continue
        family, scalar, args = split_name(run_name)
        time = format_time(entry["cpu_time"], entry.get("time_unit", "ns"))
        cv = f"{100 * row['cv']['cpu_time']:.1f} %" if row["cv"] else ""
        values = counters(entry)
        gflops = values.pop("GFLOPS", None)
        rate = f"{gflops:.1f}" if gflops is not None else ""
        peak = peaks.get(scalar)
        fraction = f"{100 * gflops / peak:.0f} %" if gflops is not None and peak else ""
        others = ", ".join(
            f"{name} {value:g}" if name in PLAIN_COUNTERS else f"{name} {si(value)}"
            for name, value in values.items())
        lines.append(f"| {family} | {scalar} | {args} | {time} | {cv} | {rate} | {fraction} "
                     f"| {others} |")
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="--benchmark_format=json output files")
    parser.add_argument("--peak-float", type=float, help="single-core float peak, GFLOP/s")
    parser.add_argument("--peak-double", type=float, help="single-core double peak, GFLOP/s")
    parser.add_argument("--filter", help="only the benchmarks whose name matches this regex")
    options = parser.parse_args(argv)

    files = collect(options.json)
    if options.filter:
        keep = re.compile(options.filter)
        files = [(executable, context,
                  {name: row for name, row in rows.items()
                   if keep.search(name) or split_name(name)[0] == "BM_fma_peak"})
                 for executable, context, rows in files]
    peaks = find_peaks(files)
    if options.peak_float:
        peaks["float"] = options.peak_float
    if options.peak_double:
        peaks["double"] = options.peak_double

    out = []
    if peaks:
        out.append("FMA peak (one core): " + ", ".join(
            f"{scalar} {value:.1f} GFLOP/s" for scalar, value in sorted(peaks.items())) + ".")
    else:
        out.append("No BM_fma_peak result and no --peak-float/--peak-double: "
                   "the fraction of peak is left empty.")
    for executable, context, rows in files:
        out.append("")
        out.append(f"### {executable}")
        out.append("")
        details = [context.get("date", ""), f"{context.get('num_cpus', '?')} CPUs",
                   f"{context.get('mhz_per_cpu', '?')} MHz"]
        out.append("Run " + ", ".join(d for d in details if d) + ".")
        out.append("")
        out.append(table(rows, peaks))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
