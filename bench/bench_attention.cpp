// The attention steps that bench_sweep does not cover, at d = k = 100: the Gauss-Seidel MM
// sweep over n, and the Jacobi MM step at n = 512 as the token scale grows (underflowing
// weights). Each benchmark states its flop count beside it; only the matrix products count.

#include "common.hpp"

namespace {

using unfold::Matrix;
using unfold::bench::width;

template <class Scalar>
unfold::AttentionEnergy<Scalar> identity_energy()
{
  return unfold::AttentionEnergy<Scalar>(Matrix<Scalar>::Identity(width, width));
}

// The Gauss-Seidel sweep, token by token: flops = n (2nk + 2nd + 2dk), all matrix-vector.
template <class Scalar>
void BM_gauss_seidel_mm_step(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width, k = width;
  const auto energy = identity_energy<Scalar>();
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> Yout(n, d);

  for (auto _ : state) {
    unfold::gauss_seidel_mm_step(energy, Y, {Scalar(1)}, Yout);
    benchmark::DoNotOptimize(Yout.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 2.0 * n * n * k + 2.0 * n * n * d + 4.0 * n * d * k);
  unfold::bench::set_rate(state, "tokens/s", double(n));
}

// The Jacobi MM step at n = 512 as the token scale sigma grows (argument: 10 sigma). Far-apart
// tokens give weights that underflow; wherever Eigen's vectorised exp returns a subnormal
// instead of 0 (float near s = 100, double below -709), the mixing product runs on subnormal
// operands. flops = 2ndk + n^2 k + 2n^2 d, as BM_mm_step of bench_sweep.
template <class Scalar>
void BM_mm_attention_step_scale(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width, k = width;
  const double sigma = 0.1 * double(state.range(1));
  const auto energy = identity_energy<Scalar>();
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d, 0, sigma);
  Matrix<Scalar> Yout(n, d);

  for (auto _ : state) {
    unfold::mm_attention_step(energy, Y, {Scalar(1)}, Yout);
    benchmark::DoNotOptimize(Yout.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 2.0 * n * d * k + double(n) * n * k + 2.0 * n * n * d);
  unfold::bench::set_rate(state, "tokens/s", double(n));
}

void sweep_to_512(benchmark::internal::Benchmark* b) { unfold::bench::sweep(b, 512); }
void scales(benchmark::internal::Benchmark* b)
{
  b->ArgNames({"n", "sigma_x10"});
  for (long scale : {1, 10, 30})
    b->Args({512, scale});
  b->MinTime(0.05)->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_gauss_seidel_mm_step, float)->Apply(sweep_to_512);
BENCHMARK_TEMPLATE(BM_gauss_seidel_mm_step, double)->Apply(sweep_to_512);
BENCHMARK_TEMPLATE(BM_mm_attention_step_scale, float)->Apply(scales);
BENCHMARK_TEMPLATE(BM_mm_attention_step_scale, double)->Apply(scales);

BENCHMARK_MAIN();
