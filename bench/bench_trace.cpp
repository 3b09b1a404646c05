// The paper's model, consistent variant (Jacobi MM attention step, then the feed-forward step
// with ReLU), one weight-tied layer applied 12 times at d = 100, with no trace, a trace at
// layer ends, and the trace after every step.
//
// Work per layer: the attention step does 2ndk + n^2 k + 2n^2 (d + 1) flops and n^2 / 2
// exponentials, the feed-forward step 2nd^2 flops (k = d). What the traces add:
//   every_layer  the feed-forward energy at each layer end (2nd^2 flops, 13 times) and the
//                attention energy once at the very end; the attention energy at the other
//                layer ends is the by-product of the next attention step (apply_and_value).
//   every_step   in addition, both energies after every attention step: the attention energy
//                there is a full evaluation (2ndk + n^2 k flops and n^2 / 2 exponentials, 12
//                times), because no step computes weights at those tokens.
// Counters: layers/s, and trace_entries.

#include "common.hpp"

namespace {

using unfold::Matrix;
using unfold::bench::width;

constexpr std::size_t depth = 12;

template <class Scalar>
void BM_stack_trace(benchmark::State& state)
{
  using Layer = unfold::compat::ConsistentLayer<Scalar>;
  const Eigen::Index n = state.range(0);
  const long trace = state.range(1);

  const auto weights = unfold::compat::PaperWeights<Scalar>::xavier(width, unfold::bench::seed);
  const auto stack = unfold::Stack<Layer>::tied(unfold::compat::consistent_layer(weights, true),
                                                depth);
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, width);
  unfold::RunOptions<Scalar> options;
  options.record_trace = trace != 0;
  options.granularity = trace == 1 ? unfold::TraceGranularity::every_layer
                                   : unfold::TraceGranularity::every_step;

  std::size_t entries = 0;
  for (auto _ : state) {
    auto result = unfold::run(stack, Y, options);
    benchmark::DoNotOptimize(result.tokens.data());
    benchmark::ClobberMemory();
    entries = result.trace.entries.size();
  }
  unfold::bench::set_rate(state, "layers/s", double(depth));
  state.counters["trace_entries"] = double(entries);
}

// trace: 0 = none, 1 = every_layer, 2 = every_step.
void lengths_and_trace(benchmark::internal::Benchmark* b)
{
  b->ArgNames({"n", "trace"});
  for (long n : {32, 128, 512, 1024, 2048, 4096})
    for (long trace : {0, 1, 2})
      b->Args({n, trace});
  b->MinTime(0.05)->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_stack_trace, float)->Apply(lengths_and_trace);
BENCHMARK_TEMPLATE(BM_stack_trace, double)->Apply(lengths_and_trace);

BENCHMARK_MAIN();
