// The streamed (blocked) attention path against the dense one: energy value, gradient, the MM
// step, its bound and the plain softmax step agree to rounding on random shapes, on block
// sizes that do and do not divide n, with duplicate tokens and at huge and tiny scales; the
// policy picks the path by size and can be forced; a step reports its energy bit for bit.

#include "helpers.hpp"

#include <cmath>
#include <string>

using namespace unfold;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;

namespace {

// Largest absolute difference divided by max(1, largest absolute entry of the reference).
template <class Scalar>
Scalar relative_gap(const Matrix<Scalar>& reference, const Matrix<Scalar>& other)
{
  const Scalar scale = std::max(Scalar(1), reference.cwiseAbs().maxCoeff());
  return (reference - other).cwiseAbs().maxCoeff() / scale;
}

template <class Scalar>
Scalar relative_gap(Scalar reference, Scalar other)
{
  return std::abs(reference - other) / std::max(Scalar(1), std::abs(reference));
}

// Every quantity of the streamed path with tiles of `block` tokens against the dense path, on
// tokens Y, for the energy (P, lambda) with kernel Kernel.
template <class Scalar, class Kernel>
void require_paths_agree(const Matrix<Scalar>& Y, const Matrix<Scalar>& P, Scalar lambda,
                         Eigen::Index block)
{
  const Scalar tol = Tolerance<Scalar>::exact;
  const Eigen::Index n = Y.rows(), d = Y.cols();
  const AttentionEnergy<Scalar, Kernel> dense(P, lambda, AttentionPolicy::dense());
  const auto streamed = dense.with_policy(AttentionPolicy::streamed(block));
  INFO("n " << n << ", d " << d << ", k " << P.cols() << ", lambda " << lambda << ", block "
            << block);

  // Value, and the fused value and gradient.
  const Scalar value_gap = relative_gap(dense.value(Y), streamed.value(Y));
  INFO("value gap " << value_gap);
  REQUIRE(value_gap <= tol);

  Matrix<Scalar> G_dense(n, d), G_streamed(n, d);
  const Scalar fused_dense = dense.value_and_gradient(Y, G_dense);
  const Scalar fused_streamed = streamed.value_and_gradient(Y, G_streamed);
  CHECK(fused_dense == dense.value(Y));
  CHECK(fused_streamed == streamed.value(Y));
  const Scalar gradient_gap = relative_gap(G_dense, G_streamed);
  INFO("gradient gap " << gradient_gap);
  REQUIRE(gradient_gap <= tol);

  // The Jacobi MM step and the energy it reports at its input.
  for (Scalar alpha : {Scalar(1), Scalar(0.6)}) {
    Matrix<Scalar> out_dense(n, d), out_streamed(n, d);
    mm_attention_step(dense, Y, {alpha}, out_dense);
    const Scalar reported = mm_attention_step_and_value(streamed, Y, {alpha}, out_streamed);
    const Scalar step_gap = relative_gap(out_dense, out_streamed);
    INFO("alpha " << alpha << ", step gap " << step_gap);
    REQUIRE(step_gap <= tol);
    CHECK(reported == streamed.value(Y));
  }

  // The bound reads the same weights.
  const auto bound_dense = mm_attention_bound(dense, Y, {Scalar(1)});
  const auto bound_streamed = mm_attention_bound(streamed, Y, {Scalar(1)});
  if (std::isfinite(bound_dense.max_step_size)) {
    CHECK(relative_gap(bound_dense.max_step_size, bound_streamed.max_step_size) <= tol);
  } else {
    CHECK(bound_dense.max_step_size == bound_streamed.max_step_size);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("streamed and dense attention agree on random shapes", "[streamed]", float,
                   double)
{
  using Scalar = TestType;
  std::uint64_t seed = 100;
  for (Eigen::Index n : {1, 2, 7, 33, 64, 101}) {
    for (Eigen::Index block : {1, 3, 16, 64}) {
      ++seed;
      INFO("seed " << seed);
      const Eigen::Index d = 1 + Eigen::Index(seed % 6), k = 1 + Eigen::Index((seed / 2) % 5);
      const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, seed, 0.7);
      const Matrix<Scalar> P = random_tokens<Scalar>(d, k, seed + 1000, 0.8);
      for (Scalar lambda : {Scalar(0), Scalar(0.7)}) {
        require_paths_agree<Scalar, ExpKernel>(Y, P, lambda, block);
        require_paths_agree<Scalar, LogKernel>(Y, P, lambda, block);
      }
    }
  }
}

TEMPLATE_TEST_CASE("streamed and dense agree for every kernel when the block does not divide n",
                   "[streamed]", ExpKernel, LogKernel, RationalKernel)
{
  using Kernel = TestType;
  const Matrix<double> Y = random_tokens<double>(70, 5, 7, 0.9);
  const Matrix<double> P = random_tokens<double>(5, 4, 8, 0.7);
  for (Eigen::Index block : {9, 32, 69, 71})
    require_paths_agree<double, Kernel>(Y, P, 0.0, block);
  require_paths_agree<double, Kernel>(Y, P, 0.25, 9);
}

TEMPLATE_TEST_CASE("streamed and dense agree with duplicate tokens", "[streamed][edge]", float,
                   double)
{
  using Scalar = TestType;
  const Matrix<Scalar> P = random_tokens<Scalar>(4, 4, 11, 0.8);

  // Some rows repeated, in different blocks.
  Matrix<Scalar> Y = random_tokens<Scalar>(23, 4, 12);
  Y.row(5) = Y.row(1);
  Y.row(17) = Y.row(1);
  Y.row(22) = Y.row(9);
  for (Eigen::Index block : {4, 5, 8})
    require_paths_agree<Scalar, ExpKernel>(Y, P, Scalar(0), block);

  // Every token the same: every weight is 1, the step leaves the tokens where they are.
  const Matrix<Scalar> same = Matrix<Scalar>::Ones(13, 1) * random_tokens<Scalar>(1, 4, 13);
  require_paths_agree<Scalar, ExpKernel>(same, P, Scalar(0), 4);
  Matrix<Scalar> out(13, 4);
  mm_attention_step(AttentionEnergy<Scalar>(P, Scalar(0), AttentionPolicy::streamed(4)), same,
                    {Scalar(1)}, out);
  CHECK(relative_gap(same, out) <= Tolerance<Scalar>::exact);
}

TEMPLATE_TEST_CASE("streamed and dense agree at huge and tiny norms", "[streamed][edge]", float,
                   double)
{
  using Scalar = TestType;
  const Matrix<Scalar> P = random_tokens<Scalar>(3, 3, 21, 0.8);

  // Far apart: all weights underflow and are flushed to 0, on both paths.
  const Matrix<Scalar> huge = random_tokens<Scalar>(29, 3, 22, 1e4);
  require_paths_agree<Scalar, ExpKernel>(huge, P, Scalar(0), 8);
  require_paths_agree<Scalar, ExpKernel>(huge, P, Scalar(0.5), 8);

  // Far from the origin but close to each other: the centred Gram matrix keeps the distances.
  const double offset = std::is_same_v<Scalar, float> ? 1e3 : 1e6;
  Matrix<Scalar> shifted = random_tokens<Scalar>(29, 3, 23, 0.5);
  const RowVector<Scalar> centre = random_tokens<Scalar>(1, 3, 24, offset);
  shifted.rowwise() += centre;
  require_paths_agree<Scalar, ExpKernel>(shifted, P, Scalar(0), 8);

  // All together: every weight is 1.
  const double small = std::is_same_v<Scalar, float> ? 1e-20 : 1e-150;
  const Matrix<Scalar> tiny = random_tokens<Scalar>(29, 3, 25, small);
  require_paths_agree<Scalar, ExpKernel>(tiny, P, Scalar(0), 8);
  require_paths_agree<Scalar, LogKernel>(tiny, P, Scalar(0.5), 8);
  const AttentionEnergy<Scalar> energy(P, Scalar(0), AttentionPolicy::streamed(8));
  CHECK(energy.value(tiny) == Approx(-29.0 * 28.0 / 2).epsilon(1e-6));
}

TEMPLATE_TEST_CASE("the streamed plain softmax step keeps a running maximum", "[streamed]",
                   float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;
  std::uint64_t seed = 300;
  for (Eigen::Index n : {1, 5, 40}) {
    for (Eigen::Index block : {1, 6, 16}) {
      ++seed;
      INFO("seed " << seed << ", n " << n << ", block " << block);
      const Matrix<Scalar> F = random_tokens<Scalar>(4, 3, seed + 1, 0.8);
      // Widely spread norms: the largest logit of a query is rarely its own, and it moves as
      // the blocks of keys go by.
      Matrix<Scalar> Y = random_tokens<Scalar>(n, 4, seed);
      for (Eigen::Index i = 0; i < n; ++i)
        Y.row(i) *= Scalar(0.2 + 0.1 * double(i % 7));
      Matrix<Scalar> dense(n, 4), streamed(n, 4);
      softmax_attention_step<Scalar>(F, Y, {Scalar(0.8)}, dense, AttentionPolicy::dense());
      softmax_attention_step<Scalar>(F, Y, {Scalar(0.8)}, streamed,
                                     AttentionPolicy::streamed(block));
      const Scalar gap = relative_gap(dense, streamed);
      INFO("gap " << gap);
      CHECK(gap <= tol);
    }
  }

  // Logits in the hundreds: without the running maximum exp would overflow.
  const Matrix<Scalar> F = Matrix<Scalar>::Identity(3, 3);
  const Matrix<Scalar> Y = random_tokens<Scalar>(20, 3, 399, 8.0);
  Matrix<Scalar> dense(20, 3), streamed(20, 3);
  softmax_attention_step<Scalar>(F, Y, {Scalar(1)}, dense, AttentionPolicy::dense());
  softmax_attention_step<Scalar>(F, Y, {Scalar(1)}, streamed, AttentionPolicy::streamed(3));
  CHECK(streamed.allFinite());
  CHECK(relative_gap(dense, streamed) <= tol);
}

TEST_CASE("the automatic policy streams above dense_max_n, and either path can be forced",
          "[streamed][policy]")
{
  AttentionPolicy automatic;
  automatic.dense_max_n = 40;
  automatic.block = 16;
  CHECK_FALSE(automatic.streams(40));
  CHECK(automatic.tile(40) == 40);
  CHECK(automatic.streams(41));
  CHECK(automatic.tile(41) == 16);
  CHECK(AttentionPolicy::dense().tile(100000) == 100000);
  CHECK(AttentionPolicy::streamed(64).tile(10) == 10);
  CHECK(AttentionPolicy::streamed(64).tile(1000) == 64);

  // The default energy is automatic and agrees with both forced paths on either side.
  const Matrix<double> P = random_tokens<double>(3, 3, 31, 0.8);
  for (Eigen::Index n : {40, 41}) {
    const Matrix<double> Y = random_tokens<double>(n, 3, 32);
    const AttentionEnergy<double> energy(P, 0.0, automatic);
    CHECK(energy.policy().path == AttentionPath::automatic);
    const double value = energy.value(Y);
    CHECK(value == (n <= 40 ? energy.with_policy(AttentionPolicy::dense()).value(Y)
                            : energy.with_policy(AttentionPolicy::streamed(16)).value(Y)));
  }
  CHECK(AttentionEnergy<double>(P).policy().path == AttentionPath::automatic);
}

TEST_CASE("a bad policy is rejected with the field and its value", "[streamed][validation]")
{
  const Matrix<double> P = Matrix<double>::Identity(3, 3);
  AttentionPolicy zero_block = AttentionPolicy::streamed(0);
  CHECK(invalid_argument_message([&] { AttentionEnergy<double>(P, 0.0, zero_block); }) ==
        "AttentionEnergy: policy.block = 0, expected block >= 1");
  AttentionPolicy negative;
  negative.dense_max_n = -1;
  CHECK(invalid_argument_message([&] {
          AttentionEnergy<double>(P).with_policy(negative);
        }) == "AttentionEnergy::with_policy: policy.dense_max_n = -1, expected dense_max_n >= 0");
  const Matrix<double> Y = random_tokens<double>(4, 3, 41);
  Matrix<double> out(4, 3);
  CHECK(invalid_argument_message([&] {
          softmax_attention_step<double>(P, Y, {1.0}, out, zero_block);
        }) == "softmax_attention_step: policy.block = 0, expected block >= 1");
}

TEMPLATE_TEST_CASE("the MM step object reports its energy at its input bit for bit",
                   "[streamed][fused]", float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> P = random_tokens<Scalar>(5, 4, 51, 0.6);
  const Matrix<Scalar> Y = random_tokens<Scalar>(37, 5, 52);
  for (const AttentionPolicy& policy : {AttentionPolicy::dense(), AttentionPolicy::streamed(8)}) {
    for (Sweep sweep : {Sweep::jacobi, Sweep::gauss_seidel}) {
      for (Scalar lambda : {Scalar(0), Scalar(0.3)}) {
        const MMAttentionStep<Scalar> step(AttentionEnergy<Scalar>(P, lambda, policy),
                                           {Scalar(0.9)}, sweep);
        Matrix<Scalar> applied(37, 5), fused(37, 5);
        step.apply(Y, applied);
        const Scalar value = step.apply_and_value(Y, fused);
        CHECK(value == step.energy().value(Y));
        CHECK(applied == fused);

        // In place, as apply allows.
        Matrix<Scalar> in_place = Y;
        CHECK(step.apply_and_value(in_place, in_place) == value);
        CHECK(in_place == applied);
      }
    }
  }
}
