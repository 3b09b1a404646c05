#!/usr/bin/env python3
"""Times unfold's benchmarks and the same operations written in PyTorch, in one session.

For every row of the table the C++ benchmark (one Google Benchmark run of one benchmark, JSON
output) and the PyTorch version are timed in turn, `--rounds` times, alternating sides so that
a slow spell of a shared machine hits both; each side's time is the median over the rounds
(within a round, the median over repetitions). Both sides run on one thread:
torch.set_num_threads(1), and OPENBLAS_NUM_THREADS=1 / OMP_NUM_THREADS=1 for the C++ side.
Times are CPU time of the timed thread (what Google Benchmark reports by default): on a busy
machine wall time mostly measures the neighbours. The last column is unfold / PyTorch.

Needs PyTorch (Debian: apt-get install -y python3-torch libopenblas0-pthread, then run this
with /usr/bin/python3). Usage:

    /usr/bin/python3 bench/compare_pytorch.py --build BUILD_DIR [--rounds 5] [--json OUT]
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time


def openblas_coretype():
    """The OpenBLAS kernel family for this CPU, from its flags. OpenBLAS 0.3.21 (Debian
    bookworm) does not know recent Xeons and falls back to its Prescott kernels, about 4x
    slower than its AVX-512 ones; PyTorch's products then measure that fallback, not PyTorch."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((l.split(":", 1)[1].split() for l in info if l.startswith("flags")), [])
    except OSError:
        return None
    if "avx512f" in flags:
        return "SkylakeX"
    if "avx2" in flags:
        return "Haswell"
    return None


# OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, that is when torch is imported: set it
# (unless the caller did) and start again. --as-installed keeps OpenBLAS's own detection.
if "--as-installed" not in sys.argv and "OPENBLAS_CORETYPE" not in os.environ:
    coretype = openblas_coretype()
    if coretype:
        os.environ["OPENBLAS_CORETYPE"] = coretype
        os.execv(sys.executable, [sys.executable] + sys.argv)

try:
    import torch
except ImportError:  # the script is optional: say so and stop cleanly
    print("compare_pytorch.py: PyTorch is not installed for", sys.executable,
          "(Debian: apt-get install -y python3-torch; run with /usr/bin/python3)")
    sys.exit(0)

DEPTH = 12


# ---------------------------------------------------------------------------------------------
# The C++ side: one benchmark of one binary, its CPU time per iteration in seconds.

def cpp_seconds(build, binary, name, min_time):
    path = os.path.join(build, "bench", binary)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [path, "--benchmark_filter=^" + name + "(/min_time:[0-9.]+)?$",
         "--benchmark_format=json", "--benchmark_min_time=%g" % min_time],
        check=True, capture_output=True, text=True, env=env).stdout
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
    if not runs:
        raise RuntimeError("no benchmark matched %s in %s" % (name, binary))
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[runs[0]["time_unit"]]
    return runs[0]["cpu_time"] * unit


# ---------------------------------------------------------------------------------------------
# The PyTorch side: the median CPU time of `repeat` calls of f after one warm-up call.

def torch_seconds(f, repeat):
    with torch.no_grad() if getattr(f, "no_grad", True) else torch.enable_grad():
        f()
        times = []
        for _ in range(repeat):
            start = time.thread_time()
            f()
            times.append(time.thread_time() - start)
    return statistics.median(times)


def tokens(n, d, seed=0, sigma=0.1):
    g = torch.Generator().manual_seed(seed)
    return sigma * torch.randn(n, d, generator=g)


def xavier(d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, d, generator=g) * (2.0 / (d + d)) ** 0.5


def gram_energy(Z):
    """sum_{i<j} -exp(-0.5 ||z_i - z_j||^2) from the Gram matrix."""
    q = (Z * Z).sum(1)
    s = (0.5 * (q[:, None] + q[None, :]) - Z @ Z.T).clamp_min(0)
    return -torch.triu(torch.exp(-s), diagonal=1).sum()


def pair_index_energy(Z):
    """The same energy from index tensors over all ordered pairs (n^2 x k differences), each
    unordered pair counted once by halving, as the authors' code forms it."""
    n = Z.shape[0]
    i = torch.arange(n).repeat_interleave(n)
    j = torch.arange(n).repeat(n)
    diff = Z[i] - Z[j]
    e = -torch.exp(-0.5 * (diff * diff).sum(1))
    return 0.5 * (e.sum() + n)  # the n diagonal terms are -1 each


def ffn_energy(Y, S, b):
    return 0.5 * ((Y @ S * Y).sum() + ((Y - b) ** 2).sum())


def mm_step(Y, P):
    """One Jacobi MM step, alpha = 1: row_softmax(Z Z^T - 0.5 * 1 q^T) Y."""
    Z = Y @ P
    q = (Z * Z).sum(1)
    return torch.softmax(Z @ Z.T - 0.5 * q[None, :], dim=1) @ Y


def ffn_step(Y, S, b):
    return torch.relu(-(Y @ S) + b)


def forward(Y, P, S, b, energy, every):
    """The 12-layer weight-tied consistent model; energies of both terms at the start and after
    every step ('step'), after every layer ('layer'), or never (None)."""
    trace = []

    def record(X):
        trace.append(float(energy(X @ P)) + float(ffn_energy(X, S, b)))

    if every:
        record(Y)
    for _ in range(DEPTH):
        Y = mm_step(Y, P)
        if every == "step":
            record(Y)
        Y = ffn_step(Y, S, b)
        if every:
            record(Y)
    return Y, trace


def clamp_symmetric(A, lo, hi):
    w, U = torch.linalg.eigh(0.5 * (A + A.T))
    return U @ torch.diag(w.clamp(lo, hi)) @ U.T


# ---------------------------------------------------------------------------------------------
# The rows: (label, C++ binary, C++ benchmark, PyTorch callable, PyTorch repetitions).

def rows(quick):
    d = 100
    out = []

    for heads in (1, 4):
        n = 512
        Y = tokens(n, d, 1, 1.0)[None]
        mha = torch.nn.MultiheadAttention(d, heads, batch_first=True).eval()
        f = lambda mha=mha, Y=Y: mha(Y, Y, Y, need_weights=False)
        out.append(("reference attention, %d head%s, n=512" % (heads, "s" * (heads > 1)),
                    "bench_reference", "BM_reference_attention<float>/n:512/heads:%d" % heads,
                    "nn.MultiheadAttention", f, 20))
        if heads == 1:
            out.append(("MM step vs MultiheadAttention, n=512", "bench_sweep",
                        "BM_mm_step<float>/n:512/d:100/path:0", "nn.MultiheadAttention", f, 20))
        enc = torch.nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0,
                                               batch_first=True).eval()
        g = lambda enc=enc, Y=Y: enc(Y)
        out.append(("reference encoder layer, %d head%s, n=512" % (heads, "s" * (heads > 1)),
                    "bench_reference", "BM_reference_encoder_layer<float>/n:512/heads:%d" % heads,
                    "nn.TransformerEncoderLayer", g, 20))

    P = torch.eye(d)
    for n in ((512,) if quick else (512, 1024, 2048)):
        Y = tokens(n, d, 2)
        out.append(("MM step, n=%d" % n, "bench_sweep", "BM_mm_step<float>/n:%d/d:100/path:0" % n,
                    "torch MM step", lambda Y=Y: mm_step(Y, P), 10))
        out.append(("softmax(Y M Y^T) Y, n=%d" % n, "bench_sweep",
                    "BM_softmax_step<float>/n:%d/d:100/path:0" % n,
                    "torch softmax(Y M Y^T) Y",
                    lambda Y=Y: torch.softmax(Y @ P @ P.T @ Y.T, dim=1) @ Y, 10))
        out.append(("energy value, n=%d" % n, "bench_sweep",
                    "BM_energy_value<float>/n:%d/d:100/path:0" % n, "torch Gram energy",
                    lambda Y=Y: gram_energy(Y @ P), 10))

        def value_and_gradient(Y=Y):
            X = Y.clone().requires_grad_(True)
            e = gram_energy(X @ P)
            e.backward()
            return e, X.grad
        value_and_gradient.no_grad = False
        out.append(("energy value+gradient, n=%d" % n, "bench_sweep",
                    "BM_energy_value_and_gradient<float>/n:%d/d:100/path:0" % n,
                    "torch Gram energy + autograd", value_and_gradient, 10))
        if n <= 1024:
            out.append(("energy value vs pair-index, n=%d" % n, "bench_sweep",
                        "BM_energy_value<float>/n:%d/d:100/path:0" % n, "torch pair-index energy",
                        lambda Y=Y: pair_index_energy(Y @ P), 3))

    # The 12-layer forward at n = 1024 with Xavier weights, as bench_trace.cpp runs it.
    n = 1024
    Y = tokens(n, d, 3)
    W = xavier(d, 4)
    S = clamp_symmetric(xavier(d, 5) @ xavier(d, 5).T, 0.0, 0.95)
    b = 0.1 * tokens(1, d, 6, 1.0)
    for label, trace, torch_label, energy, every, repeat in (
            ("12 layers, no trace", 0, "torch, no energies", gram_energy, None, 3),
            ("12 layers, trace every layer", 1, "torch Gram energies every layer", gram_energy,
             "layer", 3),
            ("12 layers, trace every step", 2, "torch Gram energies every step", gram_energy,
             "step", 3),
            ("12 layers, trace every layer", 1, "torch pair-index energies every layer",
             pair_index_energy, "layer", 1),
            ("12 layers, trace every step", 2, "torch pair-index energies every step",
             pair_index_energy, "step", 1)):
        if quick and energy is pair_index_energy:
            continue
        out.append(("%s, n=1024" % label, "bench_trace",
                    "BM_stack_trace<float>/n:1024/trace:%d" % trace, torch_label,
                    lambda energy=energy, every=every: forward(Y, W, S, b, energy, every),
                    repeat))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", required=True, help="CMake build directory of unfold")
    parser.add_argument("--rounds", type=int, default=5, help="alternations per row")
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="Google Benchmark --benchmark_min_time per C++ run")
    parser.add_argument("--quick", action="store_true", help="fewer rows, no pair-index rows")
    parser.add_argument("--rows", type=re.compile,
                        help="only the rows whose label or PyTorch side matches this regex")
    parser.add_argument("--json", help="write the table and the machine here")
    parser.add_argument("--as-installed", action="store_true",
                        help="leave OPENBLAS_CORETYPE unset (OpenBLAS detects the CPU itself)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    print("machine: %s, %d CPUs; torch %s, %d thread; OPENBLAS_CORETYPE=%s; %s" % (
        model, os.cpu_count(), torch.__version__, torch.get_num_threads(),
        os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        datetime.datetime.now().isoformat(timespec="seconds")))

    table = []
    header = "%-44s %-38s %12s %12s %9s" % ("row", "PyTorch", "unfold ms", "PyTorch ms",
                                           "ratio")
    print(header)
    print("-" * len(header))
    for label, binary, name, torch_label, f, repeat in rows(args.quick):
        if args.rows and not args.rows.search(label + " " + torch_label):
            continue
        cpp, py = [], []
        for r in range(args.rounds):
            # Alternate which side goes first, so that neither always follows the other.
            if r % 2 == 0:
                cpp.append(cpp_seconds(args.build, binary, name, args.min_time))
                py.append(torch_seconds(f, repeat))
            else:
                py.append(torch_seconds(f, repeat))
                cpp.append(cpp_seconds(args.build, binary, name, args.min_time))
        c, p = statistics.median(cpp), statistics.median(py)
        table.append({"row": label, "benchmark": binary + " " + name, "pytorch": torch_label,
                      "unfold_ms": 1e3 * c, "pytorch_ms": 1e3 * p, "ratio": c / p,
                      "unfold_ms_all": [1e3 * x for x in cpp],
                      "pytorch_ms_all": [1e3 * x for x in py]})
        print("%-44s %-38s %12.3f %12.3f %9.4f" % (label, torch_label, 1e3 * c, 1e3 * p, c / p),
              flush=True)

    if not table:
        sys.exit("compare_pytorch.py: no row matches --rows %s" % args.rows.pattern)

    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": model, "cpus": os.cpu_count(), "torch": torch.__version__,
                       "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
                       "python": platform.python_version(), "rounds": args.rounds,
                       "date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "rows": table}, out, indent=1)


if __name__ == "__main__":
    main()
