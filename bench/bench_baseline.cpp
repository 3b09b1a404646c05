// Baselines for the attention and feed-forward kernels, measured the same way on the same
// machine: the plain Eigen products that the kernels are built from, and the exponentials they
// evaluate n^2 times. The single-core FMA peak is measured by bench_sweep (BM_fma_peak).

#include "common.hpp"

#include <cmath>

namespace {

using unfold::Matrix;
using unfold::bench::width;

template <class Scalar>
void BM_eigen_gemm_nk_kn(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), k = width;
  const Matrix<Scalar> A = unfold::bench::tokens<Scalar>(n, k, 1);
  const Matrix<Scalar> B = unfold::bench::tokens<Scalar>(k, n, 2);
  Matrix<Scalar> C(n, n);

  for (auto _ : state) {
    C.noalias() = A * B;
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 2.0 * n * n * k);
}

// The Gram matrix as the library forms it, a symmetric rank-k update of the lower triangle:
// flops = n^2 k.
template <class Scalar>
void BM_eigen_rank_update(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), k = width;
  const Matrix<Scalar> Z = unfold::bench::tokens<Scalar>(n, k, 1);
  Matrix<Scalar> S(n, n);

  for (auto _ : state) {
    S.setZero();
    S.template selfadjointView<Eigen::Lower>().rankUpdate(Z, Scalar(-1));
    benchmark::DoNotOptimize(S.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, double(n) * n * k);
}

// The mixing product of the attention steps, A^T Y with A n x n and Y n x d: flops = 2n^2 d.
template <class Scalar>
void BM_eigen_gemm_nn_nd(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width;
  const Matrix<Scalar> A = unfold::bench::tokens<Scalar>(n, n, 1);
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d, 2);
  Matrix<Scalar> C(n, d);

  for (auto _ : state) {
    C.noalias() = A.transpose() * Y;
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 2.0 * n * n * d);
}

// The feed-forward product Y S, (n x d)(d x d): flops = 2nd^2.
template <class Scalar>
void BM_eigen_gemm_nd_dd(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = width;
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d, 1);
  const Matrix<Scalar> S = unfold::bench::tokens<Scalar>(d, d, 2);
  Matrix<Scalar> C(n, d);

  for (auto _ : state) {
    C.noalias() = Y * S;
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 2.0 * n * d * d);
}

// n^2 exponentials through Eigen's vectorised array exp (what the softmax steps use).
template <class Scalar>
void BM_exp_vectorised(benchmark::State& state)
{
  const Eigen::Index n = state.range(0);
  const Matrix<Scalar> S = unfold::bench::tokens<Scalar>(n, n, 1).cwiseAbs() * Scalar(10);
  Matrix<Scalar> W(n, n);

  for (auto _ : state) {
    W = (-S.array()).exp().matrix();
    benchmark::DoNotOptimize(W.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_rate(state, "exp/s", double(n) * n);
}

// n^2 exponentials through std::exp one element at a time (what the kernels' rho and
// derivative do inside the energy's loops).
template <class Scalar>
void BM_exp_scalar(benchmark::State& state)
{
  const Eigen::Index n = state.range(0);
  const Matrix<Scalar> S = unfold::bench::tokens<Scalar>(n, n, 1).cwiseAbs() * Scalar(10);
  Matrix<Scalar> W(n, n);

  for (auto _ : state) {
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index i = 0; i < n; ++i)
        W(i, j) = unfold::ExpKernel::derivative(S(i, j));
    benchmark::DoNotOptimize(W.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_rate(state, "exp/s", double(n) * n);
}

void sweep(benchmark::internal::Benchmark* b) { unfold::bench::sweep(b); }

}  // namespace

BENCHMARK_TEMPLATE(BM_eigen_gemm_nk_kn, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_eigen_gemm_nk_kn, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_eigen_rank_update, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_eigen_rank_update, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_eigen_gemm_nn_nd, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_eigen_gemm_nn_nd, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_eigen_gemm_nd_dd, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_eigen_gemm_nd_dd, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_exp_vectorised, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_exp_vectorised, double)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_exp_scalar, float)->Apply(sweep);
BENCHMARK_TEMPLATE(BM_exp_scalar, double)->Apply(sweep);

BENCHMARK_MAIN();
