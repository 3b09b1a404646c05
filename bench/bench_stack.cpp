// The paper's model, consistent variant: one weight-tied layer (Jacobi MM attention step, then
// the feed-forward step with ReLU) applied 12 times at d = 100, with and without the energy
// trace.
//
// Per layer the steps do 2ndk + n^2 k + 2n^2 d (attention, see bench_attention.cpp) plus
// 2nd^2 (feed-forward) flops. The trace adds, after each of the two steps of a layer (and once
// at the start), one evaluation of both energies: 2ndk + n^2 k + 2nd^2 flops and n^2 / 2
// exponentials each time, so it roughly doubles the O(n^2) work of a layer.

#include "common.hpp"

namespace {

using unfold::Matrix;
using unfold::bench::width;

constexpr std::size_t depth = 12;

template <class Scalar>
void BM_stack_consistent(benchmark::State& state)
{
  using Layer = unfold::compat::ConsistentLayer<Scalar>;
  const Eigen::Index n = state.range(0);
  const bool trace = state.range(1) != 0;

  const auto weights = unfold::compat::PaperWeights<Scalar>::xavier(width, unfold::bench::seed);
  const auto stack = unfold::Stack<Layer>::tied(unfold::compat::consistent_layer(weights, true),
                                                depth);
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, width);
  unfold::RunOptions<Scalar> options;
  options.record_trace = trace;

  std::size_t entries = 0;
  for (auto _ : state) {
    auto result = unfold::run(stack, Y, options);
    benchmark::DoNotOptimize(result.tokens.data());
    benchmark::ClobberMemory();
    entries = result.trace.entries.size();
  }
  unfold::bench::set_rate(state, "layers/s", double(depth));
  // Algorithmic count beside the time: energy evaluations per run (two per trace entry).
  state.counters["energy_evals"] = double(2 * entries);
}

void lengths_and_trace(benchmark::internal::Benchmark* b)
{
  b->ArgNames({"n", "trace"});
  for (long n : {32, 128, 512, 1024})
    for (long trace : {0, 1})
      b->Args({n, trace});
  b->MinTime(0.05)->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_stack_consistent, float)->Apply(lengths_and_trace);
BENCHMARK_TEMPLATE(BM_stack_consistent, double)->Apply(lengths_and_trace);

BENCHMARK_MAIN();
