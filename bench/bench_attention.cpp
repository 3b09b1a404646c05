// Attention energy and attention steps over the sequence length n, at d = k = 100.
//
// Each benchmark states its flop count beside it. Only the dominant matrix products are
// counted (the O(n d k) and O(n^2 k) terms); the exponentials, the O(n^2) elementwise passes
// and the O(n d) updates are left out, so GFLOPS is a lower bound on the arithmetic done and
// a kernel spending its time in exp shows up as a low rate.

#include "common.hpp"

namespace {

using unfold::Matrix;
using unfold::bench::width;

template <class Scalar>
unfold::AttentionEnergy<Scalar> identity_energy()
{
  return unfold::AttentionEnergy<Scalar>(Matrix<Scalar>::Identity(width, width));
}

// flops = 2ndk (Z = Y P) + n^2 k (Gram Z Z^T, lower triangle only, by a symmetric rank-k update)
template <class Scalar>
void BM_attention_value(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width, k = width;
  const auto energy = identity_energy<Scalar>();
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);

  for (auto _ : state)
    benchmark::DoNotOptimize(energy.value(Y));
  unfold::bench::set_flop_rate(state, 2.0 * n * d * k + double(n) * n * k);
  unfold::bench::set_rate(state, "tokens/s", double(n));
}

// flops = 2ndk (Z = Y P) + n^2 k (symmetric Gram) + 2n^2 k (B_off Z, the Laplacian product)
//       + 2ndk (back-projection L Z P^T)  =  4ndk + 3n^2 k
template <class Scalar>
void BM_attention_value_and_gradient(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width, k = width;
  const auto energy = identity_energy<Scalar>();
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> G(n, d);

  for (auto _ : state) {
    benchmark::DoNotOptimize(energy.value_and_gradient(Y, G));
    benchmark::DoNotOptimize(G.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 4.0 * n * d * k + 3.0 * n * n * k);
  unfold::bench::set_rate(state, "tokens/s", double(n));
}

// Jacobi MM step (key-norm-corrected softmax, lambda = 0):
// flops = 2ndk (Z = Y P) + n^2 k (symmetric Gram) + 2n^2 d (mixing A Y)
template <class Scalar>
void BM_mm_attention_step(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width, k = width;
  const auto energy = identity_energy<Scalar>();
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> Yout(n, d);

  for (auto _ : state) {
    unfold::mm_attention_step(energy, Y, {Scalar(1)}, Yout);
    benchmark::DoNotOptimize(Yout.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 2.0 * n * d * k + double(n) * n * k + 2.0 * n * n * d);
  unfold::bench::set_rate(state, "tokens/s", double(n));
}

// Plain softmax step with F = I:
// flops = 2ndk (Z = Y F) + n^2 k (symmetric Gram) + 2n^2 d (mixing)
template <class Scalar>
void BM_softmax_attention_step(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width, k = width;
  const Matrix<Scalar> F = Matrix<Scalar>::Identity(d, k);
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d);
  Matrix<Scalar> Yout(n, d);

  for (auto _ : state) {
    unfold::softmax_attention_step<Scalar>(F, Y, {Scalar(1)}, Yout);
    benchmark::DoNotOptimize(Yout.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 2.0 * n * d * k + double(n) * n * k + 2.0 * n * n * d);
  unfold::bench::set_rate(state, "tokens/s", double(n));
}

// Gauss-Seidel MM sweep, one token at a time, so all products are matrix-vector:
// flops = 2ndk (initial Z = Y P) + n (2nk (Z z_i) + 2nd (w^T X) + 2dk (z_i = x_i P))
//       = 2n^2 k + 2n^2 d + 4ndk
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
// operands. Same flop count as BM_mm_attention_step.
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

void sweep(benchmark::internal::Benchmark* b) { unfold::bench::sweep(b); }
void sweep_to_512(benchmark::internal::Benchmark* b) { unfold::bench::sweep(b, 512); }
void scales(benchmark::internal::Benchmark* b)
{
  b->ArgNames({"n", "sigma_x10"});
  for (long scale : {1, 10, 30})
    b->Args({512, scale});
  b->MinTime(0.05)->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_attention_value, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_attention_value, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_attention_value_and_gradient, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_attention_value_and_gradient, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_mm_attention_step, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_mm_attention_step, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_softmax_attention_step, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_softmax_attention_step, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_gauss_seidel_mm_step, float)->Apply(sweep_to_512);
BENCHMARK_TEMPLATE(BM_gauss_seidel_mm_step, double)->Apply(sweep_to_512);
BENCHMARK_TEMPLATE(BM_mm_attention_step_scale, float)->Apply(scales);
BENCHMARK_TEMPLATE(BM_mm_attention_step_scale, double)->Apply(scales);

BENCHMARK_MAIN();
