// The attention and feed-forward kernels over n in {32, ..., 8192}, d in {64, 100, 256}, float
// and double, on the path the policy picks (and, at chosen sizes, on each path forced).
//
// Counters of every benchmark:
//   GFLOPS         the flop count stated beside the benchmark, per second. Only the matrix
//                  products are counted; exponentials and elementwise passes are not, so a
//                  kernel that spends its time in exp shows a low rate.
//   peak_fraction  GFLOPS over the single-core FMA peak of this machine, measured by this
//                  binary at start-up (BM_fma_peak shows the same measurement).
//   steps/s        calls per second (an energy evaluation or a step).
//   ns_per_n2d     time per n^2 d, which stays flat when a kernel's O(n^2 d) part dominates.
//   extra_bytes    peak heap bytes above those in use, during one untimed call, from the
//                  counting allocator of alloc_counter.hpp (0 where it is unavailable).
//
// The path argument: 0 = the default policy (dense up to dense_max_n, streamed above),
// 1 = dense forced, 2 = streamed forced.

#include "alloc_counter.hpp"
#include "common.hpp"

#include <algorithm>
#include <ctime>
#include <cstdint>
#include <string>

namespace {

using unfold::Matrix;

template <class Scalar>
double& measured_peak()
{
  static double peak = 0;
  return peak;
}

// CPU time of this thread, in seconds: what Google Benchmark's rates are measured in, and
// what stays meaningful on a machine shared with other work.
double thread_seconds()
{
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return double(now.tv_sec) + 1e-9 * double(now.tv_nsec);
}

// The best of a few short runs, in GFLOP/s of CPU time.
template <class Scalar>
double measure_peak()
{
  double best = 0;
  for (int trial = 0; trial < 7; ++trial) {
    const double start = thread_seconds();
    const double flops = unfold::bench::fma_rounds<Scalar>(2'000'000);
    best = std::max(best, flops / (thread_seconds() - start) * 1e-9);
  }
  return best;
}

template <class Scalar>
void BM_fma_peak(benchmark::State& state)
{
  constexpr long rounds = 1024;
  double flops = 0;
  for (auto _ : state)
    flops = unfold::bench::fma_rounds<Scalar>(rounds);
  unfold::bench::set_flop_rate(state, flops);
  state.counters["startup_peak_GFLOPS"] = measured_peak<Scalar>();
}

unfold::AttentionPolicy policy_of(long path)
{
  if (path == 1)
    return unfold::AttentionPolicy::dense();
  if (path == 2)
    return unfold::AttentionPolicy::streamed();
  return {};
}

// The counters every kernel reports; `flops` per call.
template <class Scalar>
void report(benchmark::State& state, double flops, std::int64_t extra_bytes)
{
  const double n = double(state.range(0)), d = double(state.range(1));
  unfold::bench::set_flop_rate(state, flops);
  state.counters["peak_fraction"] = benchmark::Counter(
      flops * 1e-9 / measured_peak<Scalar>(), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["steps/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["ns_per_n2d"] =
      benchmark::Counter(n * n * d * 1e-9, benchmark::Counter::kIsIterationInvariantRate |
                                               benchmark::Counter::kInvert);
  state.counters["extra_bytes"] = double(extra_bytes);
  state.counters["streamed"] = policy_of(state.range(2)).streams(state.range(0)) ? 1 : 0;
}

// Energy value. flops = 2ndk (Z = Y P) + n^2 k (the lower triangle of the Gram matrix, all
// tiles together), k = d (P is d x d).
template <class Scalar>
void BM_energy_value(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = state.range(1), k = d;
  const unfold::AttentionEnergy<Scalar> energy(Matrix<Scalar>::Identity(d, k), Scalar(0),
                                               policy_of(state.range(2)));
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  const auto extra = unfold::bench::alloc::peak_extra_bytes([&] { energy.value(Y); });

  for (auto _ : state)
    benchmark::DoNotOptimize(energy.value(Y));
  report<Scalar>(state, 2.0 * n * d * k + double(n) * n * k, extra);
}

// Energy value and gradient. flops = 2ndk (Z) + n^2 k (Gram triangle) + 2n^2 (k + 1) (the
// weights times [Zc | 1]) + 2ndk (back through P^T).
template <class Scalar>
void BM_energy_value_and_gradient(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = state.range(1), k = d;
  const unfold::AttentionEnergy<Scalar> energy(Matrix<Scalar>::Identity(d, k), Scalar(0),
                                               policy_of(state.range(2)));
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> G(n, d);
  const auto extra =
      unfold::bench::alloc::peak_extra_bytes([&] { energy.value_and_gradient(Y, G); });

  for (auto _ : state) {
    benchmark::DoNotOptimize(energy.value_and_gradient(Y, G));
    benchmark::ClobberMemory();
  }
  report<Scalar>(state, 4.0 * n * d * k + double(n) * n * k + 2.0 * n * n * (k + 1), extra);
}

// Jacobi MM step, key-norm-corrected softmax. flops = 2ndk (Z) + n^2 k (Gram triangle)
// + 2n^2 (d + 1) (the weights times [Y | 1]).
template <class Scalar>
void BM_mm_step(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = state.range(1), k = d;
  const unfold::AttentionEnergy<Scalar> energy(Matrix<Scalar>::Identity(d, k), Scalar(0),
                                               policy_of(state.range(2)));
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> out(n, d);
  const auto extra = unfold::bench::alloc::peak_extra_bytes(
      [&] { unfold::mm_attention_step(energy, Y, {Scalar(1)}, out); });

  for (auto _ : state) {
    unfold::mm_attention_step(energy, Y, {Scalar(1)}, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report<Scalar>(state, 2.0 * n * d * k + double(n) * n * k + 2.0 * n * n * (d + 1), extra);
}

// Plain softmax step, F = I. flops = 2ndk (Z) + 2n^2 d (mixing) + the logits: n^2 k on the
// dense path (one triangle), 2n^2 k on the streamed one (every tile in full, because each
// query keeps its own running maximum).
template <class Scalar>
void BM_softmax_step(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = state.range(1), k = d;
  const auto policy = policy_of(state.range(2));
  const Matrix<Scalar> F = Matrix<Scalar>::Identity(d, k);
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> out(n, d);
  const auto extra = unfold::bench::alloc::peak_extra_bytes(
      [&] { unfold::softmax_attention_step<Scalar>(F, Y, {Scalar(1)}, out, policy); });

  for (auto _ : state) {
    unfold::softmax_attention_step<Scalar>(F, Y, {Scalar(1)}, out, policy);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double logits = (policy.streams(n) ? 2.0 : 1.0) * double(n) * n * k;
  report<Scalar>(state, 2.0 * n * d * k + logits + 2.0 * n * n * d, extra);
}

// Feed-forward step with ReLU. flops = 2nd^2 (Y S).
template <class Scalar>
void BM_ffn_step(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = state.range(1);
  const Matrix<Scalar> A = unfold::bench::tokens<Scalar>(d, d, 1);
  const Matrix<Scalar> S = unfold::spectral_clamp(Matrix<Scalar>(A + A.transpose()),
                                                  Scalar(-0.95), Scalar(0.95));
  const unfold::FeedForwardEnergy<Scalar> energy(S, unfold::RowVector<Scalar>::Zero(d));
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> out(n, d);
  const auto extra = unfold::bench::alloc::peak_extra_bytes(
      [&] { unfold::feedforward_step(energy, Y, {Scalar(1), true}, out); });

  for (auto _ : state) {
    unfold::feedforward_step(energy, Y, {Scalar(1), true}, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report<Scalar>(state, 2.0 * n * d * d, extra);
}

// The full sweep on the default policy, then both forced paths at the sizes where the choice
// matters (and where the dense path still fits comfortably in memory).
void sizes(benchmark::internal::Benchmark* b)
{
  b->ArgNames({"n", "d", "path"});
  for (long d : {64, 100, 256})
    for (long n : {32, 128, 512, 1024, 2048, 4096, 8192})
      b->Args({n, d, 0});
  for (long n : {512, 1024, 2048, 4096, 8192})
    for (long path : {1, 2})
      b->Args({n, 100, path});
  b->MinTime(0.05)->Unit(benchmark::kMicrosecond);
}

// The feed-forward step has no path.
void ffn_sizes(benchmark::internal::Benchmark* b)
{
  b->ArgNames({"n", "d", "path"});
  for (long d : {64, 100, 256})
    for (long n : {32, 128, 512, 1024, 2048, 4096, 8192})
      b->Args({n, d, 0});
  b->MinTime(0.05)->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_fma_peak, float)->MinTime(0.05);
BENCHMARK_TEMPLATE(BM_fma_peak, double)->MinTime(0.05);
BENCHMARK_TEMPLATE(BM_energy_value, float)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_energy_value, double)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_energy_value_and_gradient, float)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_energy_value_and_gradient, double)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_mm_step, float)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_mm_step, double)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_softmax_step, float)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_softmax_step, double)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_ffn_step, float)->Apply(ffn_sizes);
BENCHMARK_TEMPLATE(BM_ffn_step, double)->Apply(ffn_sizes);

int main(int argc, char** argv)
{
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  measured_peak<float>() = measure_peak<float>();
  measured_peak<double>() = measure_peak<double>();
  benchmark::AddCustomContext("fma_peak_gflops_float", std::to_string(measured_peak<float>()));
  benchmark::AddCustomContext("fma_peak_gflops_double", std::to_string(measured_peak<double>()));
  benchmark::AddCustomContext("counting_allocator",
                              unfold::bench::alloc::available() ? "yes" : "no");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
