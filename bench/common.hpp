#pragma once

// Shared pieces of the unfold benchmarks: the size sweep, seeded inputs, and the rate counters
// every benchmark reports. Included by the bench_*.cpp files only.

#include <unfold/unfold.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <initializer_list>
#include <random>

namespace unfold::bench {

/// Token width d; with P = I (or F = I) the metric rank k equals d.
inline constexpr Eigen::Index width = 100;

/// One seed for every input, so that two runs time the same numbers.
inline constexpr std::uint64_t seed = 20220527;

/// The sequence lengths of the sweep.
inline constexpr std::initializer_list<Eigen::Index> lengths = {32, 64, 128, 256, 512, 1024, 2048};

/// Tokens with N(0, sigma^2) entries. At d = 100 and the default sigma = 0.1 the half squared
/// distances 0.5 ||y_i - y_j||^2 are about 1 with a spread of about 0.14, so with P = I the
/// attention weights exp(-s) are neither all 0 nor all equal.
template <Real Scalar>
Matrix<Scalar> tokens(Eigen::Index n, Eigen::Index d, std::uint64_t salt = 0, double sigma = 0.1)
{
  std::mt19937_64 rng(seed + salt);
  return normal_matrix<Scalar>(n, d, Scalar(sigma), rng);
}

/// Sweeps n over `lengths` up to `max_n`, one benchmark per length, timed in microseconds.
/// MinTime keeps a full run of all binaries to a few minutes.
inline void sweep(benchmark::internal::Benchmark* b, Eigen::Index max_n = 2048)
{
  b->ArgName("n");
  for (Eigen::Index n : lengths)
    if (n <= max_n)
      b->Arg(n);
  b->MinTime(0.05)->Unit(benchmark::kMicrosecond);
}

/// GFLOPS: `flops` per iteration (the dominant matrix products only) as 1e9 flop per second.
inline void set_flop_rate(benchmark::State& state, double flops)
{
  state.counters["GFLOPS"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// A named per-second rate of `count` things done per iteration (tokens, layers).
inline void set_rate(benchmark::State& state, const char* name, double count)
{
  state.counters[name] = benchmark::Counter(count, benchmark::Counter::kIsIterationInvariantRate,
                                            benchmark::Counter::kIs1000);
}

/// The single-core FMA peak at Eigen's packet width: sixteen independent chains
/// acc = acc * a + c (enough to cover the FMA latency on two ports), a < 1 keeping the values
/// bounded; returns the flops done, rounds * chains * lanes * 2. The constants are read
/// through volatile rather than DoNotOptimize: with Google Benchmark 1.7 and GCC, DoNotOptimize
/// on a scalar can hand back garbage (google/benchmark#903), and subnormal garbage slows the
/// loop 300-fold.
template <class Scalar>
inline double fma_rounds(long rounds)
{
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<Scalar>::type;
  constexpr int lanes = ei::packet_traits<Scalar>::size;
  constexpr int chains = 16;
  volatile Scalar a_source = Scalar(0.999), c_source = Scalar(1e-3);
  const Scalar a = a_source, c = c_source;
  const Packet pa = ei::pset1<Packet>(a), pc = ei::pset1<Packet>(c);
  Packet acc[chains];
  for (int i = 0; i < chains; ++i)
    acc[i] = ei::pset1<Packet>(Scalar(i));
  for (long r = 0; r < rounds; ++r) {
#pragma GCC unroll 16
    for (int i = 0; i < chains; ++i)
      acc[i] = ei::pmadd(acc[i], pa, pc);
  }
  // Every chain must stay live, or the compiler keeps only the one that is read.
  Scalar out[lanes * chains];
  for (int i = 0; i < chains; ++i)
    ei::pstoreu(out + i * lanes, acc[i]);
  benchmark::DoNotOptimize(out);
  benchmark::ClobberMemory();
  return 2.0 * double(rounds) * chains * lanes;
}

}  // namespace unfold::bench
