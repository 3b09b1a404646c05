// The feed-forward step Y+ = [max(0, .)](Y ((1 - alpha) I - alpha S) + alpha 1 b) over the
// sequence length n, at d = 100, with and without ReLU.
//
// flops = 2nd^2 (the product Y S); the O(nd) elementwise passes (the step, the bias, ReLU) are
// left out. The plain Eigen product of the same shape is in bench_baseline.cpp
// (BM_eigen_gemm_nd_dd).

#include "common.hpp"

namespace {

using unfold::Matrix;
using unfold::bench::width;

template <class Scalar>
void BM_feedforward_step(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width;
  const bool relu = state.range(1) != 0;

  const auto weights = unfold::compat::PaperWeights<Scalar>::xavier(d, unfold::bench::seed);
  const unfold::FeedForwardEnergy<Scalar> energy(weights.feedforward_weight(), weights.b);
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> Yout(n, d);
  const unfold::FeedForwardParams<Scalar> params{Scalar(1), relu};

  for (auto _ : state) {
    unfold::feedforward_step(energy, Y, params, Yout);
    benchmark::DoNotOptimize(Yout.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 2.0 * n * d * d);
  unfold::bench::set_rate(state, "tokens/s", double(n));
}

void lengths_and_relu(benchmark::internal::Benchmark* b)
{
  b->ArgNames({"n", "relu"});
  for (Eigen::Index n : unfold::bench::lengths)
    for (long relu : {0, 1})
      b->Args({long(n), relu});
  b->MinTime(0.05)->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_feedforward_step, float)->Apply(lengths_and_relu);
BENCHMARK_TEMPLATE(BM_feedforward_step, double)->Apply(lengths_and_relu);

BENCHMARK_MAIN();
