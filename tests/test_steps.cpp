// Steps: each equals its formula, descends where the theory says it does, reports its bound,
// tolerates edge cases, may write over its input, and rejects bad input.

#include "helpers.hpp"

#include <cmath>

using namespace unfold;
using unfold::test::did_not_rise;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;

namespace {

// Y+ = (1 - alpha) Y + alpha diag(beta 1)^{-1} beta Y, straight from MATH.md 1.1.
template <class Scalar, class Kernel>
Matrix<Scalar> jacobi_directly(const Matrix<Scalar>& Y, const Matrix<Scalar>& P, Scalar alpha)
{
  const Matrix<Scalar> Z = Y * P;
  const Eigen::Index n = Y.rows();
  Matrix<Scalar> beta(n, n);
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < n; ++j)
      beta(i, j) = Kernel::derivative(Scalar(0.5) * (Z.row(i) - Z.row(j)).squaredNorm());
  const Vector<Scalar> rows = beta.rowwise().sum();
  const Matrix<Scalar> A = rows.cwiseInverse().asDiagonal() * beta;
  return (1 - alpha) * Y + alpha * A * Y;
}

}  // namespace

TEMPLATE_TEST_CASE("Jacobi MM step equals its defining formula for every kernel", "[step][mm]",
                   ExpKernel, LogKernel, RationalKernel)
{
  using Kernel = TestType;
  for (std::uint64_t seed : {1, 2, 3}) {
    INFO("seed " << seed);
    const Matrix<double> Y = random_tokens<double>(7, 4, seed, 0.8);
    const Matrix<double> P = random_tokens<double>(4, 3, seed + 10, 0.8);
    const AttentionEnergy<double, Kernel> energy(P, 0.0);
    Matrix<double> out(7, 4);
    mm_attention_step(energy, Y, {0.7}, out);
    const Matrix<double> expected = jacobi_directly<double, Kernel>(Y, P, 0.7);
    CHECK((out - expected).cwiseAbs().maxCoeff() <= 1e-13);
  }
}

TEMPLATE_TEST_CASE("Jacobi MM step with ExpKernel is key-norm-corrected softmax", "[step][mm]",
                   float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> Y = random_tokens<Scalar>(9, 5, 4, 0.7);
  const Matrix<Scalar> P = random_tokens<Scalar>(5, 5, 5, 0.7);
  const AttentionEnergy<Scalar> energy(P, Scalar(0));
  Matrix<Scalar> out(9, 5);
  mm_attention_step(energy, Y, {1}, out);

  // A = row_softmax(Z Z^T - 0.5 * 1 q^T), written out.
  const Matrix<Scalar> Z = Y * P;
  const Vector<Scalar> q = Z.rowwise().squaredNorm();
  Matrix<Scalar> logits = Z * Z.transpose();
  logits.rowwise() -= Scalar(0.5) * q.transpose();
  Matrix<Scalar> A = (logits.colwise() - logits.rowwise().maxCoeff()).array().exp();
  A = A.array().colwise() / A.rowwise().sum().array();
  CHECK((out - A * Y).cwiseAbs().maxCoeff() <= Tolerance<Scalar>::exact);
}

TEMPLATE_TEST_CASE("MM steps never raise the pairwise energy", "[step][mm][descent]", float,
                   double)
{
  using Scalar = TestType;
  int steps = 0;
  for (std::uint64_t seed = 100; seed < 130; ++seed)
    for (double scale : {0.1, 0.7, 2.0}) {
      const Eigen::Index n = 1 + Eigen::Index(seed % 9), d = 1 + Eigen::Index(seed % 5);
      const Eigen::Index k = 1 + Eigen::Index((seed / 3) % 4);
      INFO("seed " << seed << " scale " << scale << " n " << n << " d " << d << " k " << k);
      const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, seed, scale);
      const Matrix<Scalar> P = random_tokens<Scalar>(d, k, seed + 1000);
      const AttentionEnergy<Scalar> energy(P, Scalar(0));
      const AttentionEnergy<Scalar, LogKernel> log_energy(P, Scalar(0));
      const AttentionEnergy<Scalar> damped(P, Scalar(0.5));
      Matrix<Scalar> out(n, d);

      for (Scalar alpha : {Scalar(0.1), Scalar(0.5), Scalar(1)}) {
        mm_attention_step(energy, Y, {alpha}, out);
        CHECK(did_not_rise(energy.value(Y), energy.value(out)));
        mm_attention_step(log_energy, Y, {alpha}, out);
        CHECK(did_not_rise(log_energy.value(Y), log_energy.value(out)));
        ++steps;
      }

      // Up to the bound the theory gives at this point, with lambda = 0 and lambda > 0.
      for (const auto* e : {&energy, &damped}) {
        const auto bound = mm_attention_bound(*e, Y, {Scalar(1)});
        const Scalar alpha = std::min(bound.max_step_size, Scalar(3));
        mm_attention_step(*e, Y, {alpha}, out);
        CHECK(did_not_rise(e->value(Y), e->value(out)));
      }

      // Gauss-Seidel up to alpha = 2.
      for (Scalar alpha : {Scalar(0.5), Scalar(1), Scalar(2)}) {
        gauss_seidel_mm_step(energy, Y, {alpha}, out);
        CHECK(did_not_rise(energy.value(Y), energy.value(out)));
        gauss_seidel_mm_step(damped, Y, {alpha}, out);
        CHECK(did_not_rise(damped.value(Y), damped.value(out)));
      }
    }
  CHECK(steps == 270);
}

TEMPLATE_TEST_CASE("Jacobi MM bound is 1 + rho'(0) / max_i D_i", "[step][mm][bound]", float,
                   double)
{
  using Scalar = TestType;
  const Matrix<Scalar> Y = random_tokens<Scalar>(5, 3, 8, 0.5);
  const Matrix<Scalar> P = Matrix<Scalar>::Identity(3, 3);
  const AttentionEnergy<Scalar> energy(P, Scalar(0));
  Scalar top = 0;
  for (Eigen::Index i = 0; i < 5; ++i) {
    Scalar D = 0;
    for (Eigen::Index j = 0; j < 5; ++j)
      if (j != i)
        D += std::exp(Scalar(-0.5) * (Y.row(i) - Y.row(j)).squaredNorm());
    top = std::max(top, D);
  }
  const auto bound = mm_attention_bound(energy, Y, {Scalar(1)});
  CHECK(bound.max_step_size == Approx(1 + 1 / top).epsilon(Tolerance<Scalar>::exact / 10));
  CHECK(bound.holds());
  CHECK_FALSE(mm_attention_bound(energy, Y, {bound.max_step_size * Scalar(1.01)}).holds());
  CHECK(gauss_seidel_bound<Scalar>({Scalar(2)}).holds());
  CHECK_FALSE(gauss_seidel_bound<Scalar>({Scalar(2.5)}).holds());
}

TEMPLATE_TEST_CASE("feed-forward step descends inside its bound, with and without ReLU",
                   "[step][ffn][descent]", float, double)
{
  using Scalar = TestType;
  for (std::uint64_t seed = 200; seed < 220; ++seed) {
    const Eigen::Index n = 1 + Eigen::Index(seed % 6), d = 1 + Eigen::Index(seed % 7);
    INFO("seed " << seed << " n " << n << " d " << d);
    const Matrix<Scalar> S = test::random_symmetric<Scalar>(d, seed, -0.95, 0.95);
    const RowVector<Scalar> b = random_tokens<Scalar>(1, d, seed + 1);
    const FeedForwardEnergy<Scalar> energy(S, b);
    const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, seed + 2);
    const Matrix<Scalar> Ypos = Y.cwiseAbs();
    Matrix<Scalar> out(n, d);

    const auto bound = feedforward_bound(energy, {Scalar(1), true});
    CHECK(bound.max_step_size == Approx(2 / energy.lipschitz()));
    REQUIRE(bound.holds());  // the clamp to [-0.95, 0.95] makes alpha = 1 safe

    for (bool relu : {false, true}) {
      const Matrix<Scalar>& start = relu ? Ypos : Y;
      feedforward_step(energy, start, {Scalar(1), relu}, out);
      if (relu)
        CHECK((out.array() >= 0).all());

      // E(Y+) <= E(Y) - (1/alpha - L/2) ||Y+ - Y||^2.
      const Scalar guaranteed =
          (Scalar(1) - energy.lipschitz() / 2) * (out - start).squaredNorm();
      CHECK(did_not_rise(energy.value(start) - guaranteed, energy.value(out)));
    }
  }
}

TEMPLATE_TEST_CASE("feed-forward step is Y((1-alpha) I - alpha S) + alpha 1 b", "[step][ffn]",
                   float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> S = test::random_symmetric<Scalar>(4, 9, Scalar(-2), Scalar(2));
  const RowVector<Scalar> b = random_tokens<Scalar>(1, 4, 10);
  const Matrix<Scalar> Y = random_tokens<Scalar>(3, 4, 11);
  const FeedForwardEnergy<Scalar> energy(S, b);
  const Scalar alpha = Scalar(0.3);
  Matrix<Scalar> out(3, 4);
  feedforward_step(energy, Y, {alpha, false}, out);
  const Matrix<Scalar> W = (1 - alpha) * Matrix<Scalar>::Identity(4, 4) - alpha * S;
  Matrix<Scalar> expected = Y * W;
  expected.rowwise() += alpha * b;
  // Entries of a few units, a few roundings apart: 64 ulps of 1.
  const Scalar tol = 64 * std::numeric_limits<Scalar>::epsilon();
  CHECK((out - expected).cwiseAbs().maxCoeff() <= tol);
  feedforward_step(energy, Y, {alpha, true}, out);
  CHECK((out - expected.cwiseMax(Scalar(0))).cwiseAbs().maxCoeff() <= tol);

  // The generic proximal-gradient step with the indicator's prox is the same layer.
  Matrix<Scalar> generic(3, 4);
  proximal_gradient_step(energy, NonNegativeIndicator<Scalar>(4), Y, {alpha}, generic);
  CHECK((generic - out).cwiseAbs().maxCoeff() <= tol);
}

TEMPLATE_TEST_CASE("plain softmax with unequal norms can raise the pairwise energy",
                   "[step][softmax]", float, double)
{
  using Scalar = TestType;
  // Three tokens on a line, at 1, -3 and 0: softmax pulls the origin towards the far token
  // (largest dot product) instead of towards its neighbour, and the energy rises.
  Matrix<Scalar> Y(3, 1);
  Y << 1, -3, 0;
  const Matrix<Scalar> P = Matrix<Scalar>::Identity(1, 1);
  const AttentionEnergy<Scalar> energy(P, Scalar(0));
  Matrix<Scalar> softmax(3, 1), mm(3, 1);
  softmax_attention_step<Scalar>(P, Y, {Scalar(1)}, softmax);
  mm_attention_step(energy, Y, {Scalar(1)}, mm);

  INFO("E(Y) " << energy.value(Y) << " softmax " << energy.value(softmax) << " MM "
               << energy.value(mm));
  CHECK(energy.value(softmax) > energy.value(Y) + Scalar(0.1));
  CHECK(energy.value(mm) < energy.value(Y));
  CHECK(softmax_attention_bound<Scalar>(energy, P, Y, {Scalar(1)}).max_step_size == Scalar(0));
}

TEMPLATE_TEST_CASE("softmax step equals the MM step when the metric norms are equal",
                   "[step][softmax]", float, double)
{
  using Scalar = TestType;
  for (std::uint64_t seed : {1, 2, 3, 4}) {
    INFO("seed " << seed);
    const Matrix<Scalar> P = random_tokens<Scalar>(6, 4, seed, 0.5);
    const Matrix<Scalar> Y =
        test::with_equal_metric_norms<Scalar>(random_tokens<Scalar>(8, 6, seed + 5), P, 1.3);
    const AttentionEnergy<Scalar> energy(P, Scalar(0));
    Matrix<Scalar> softmax(8, 6), mm(8, 6);
    softmax_attention_step<Scalar>(P, Y, {Scalar(0.6)}, softmax);
    mm_attention_step(energy, Y, {Scalar(0.6)}, mm);
    CHECK((softmax - mm).cwiseAbs().maxCoeff() <= Tolerance<Scalar>::exact);
    CHECK(softmax_attention_bound<Scalar>(energy, P, Y, {Scalar(0.6)}, Scalar(1e-4)).holds());
  }
}

TEMPLATE_TEST_CASE("steps handle one token, one feature, duplicates and extreme norms",
                   "[step][edge]", float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> P1 = Matrix<Scalar>::Constant(1, 1, Scalar(0.8));
  const AttentionEnergy<Scalar> one_feature(P1, Scalar(0));

  // n = 1: the token has nobody to attend to.
  const Matrix<Scalar> single = random_tokens<Scalar>(1, 1, 3);
  Matrix<Scalar> out(1, 1);
  mm_attention_step(one_feature, single, {1}, out);
  CHECK(out(0, 0) == single(0, 0));
  gauss_seidel_mm_step(one_feature, single, {1}, out);
  CHECK(out(0, 0) == single(0, 0));

  // Duplicate tokens stay duplicates.
  Matrix<Scalar> dup = random_tokens<Scalar>(5, 3, 4);
  dup.row(3) = dup.row(1);
  const AttentionEnergy<Scalar> energy(random_tokens<Scalar>(3, 3, 5), Scalar(0));
  Matrix<Scalar> moved(5, 3);
  mm_attention_step(energy, dup, {1}, moved);
  CHECK((moved.row(3) - moved.row(1)).cwiseAbs().maxCoeff() == Scalar(0));

  // Far apart: weights underflow without NaN, each token keeps to itself.
  const Matrix<Scalar> huge = random_tokens<Scalar>(5, 3, 6, 1e4);
  mm_attention_step(energy, huge, {1}, moved);
  CHECK(moved.allFinite());
  CHECK((moved - huge).cwiseAbs().maxCoeff() <= Scalar(1e-3) * huge.cwiseAbs().maxCoeff());
  gauss_seidel_mm_step(energy, huge, {1}, moved);
  CHECK(moved.allFinite());
  softmax_attention_step<Scalar>(energy.factor(), huge, {1}, moved);
  CHECK(moved.allFinite());

  // Close together: every weight is equal, the step averages.
  const Matrix<Scalar> tiny = random_tokens<Scalar>(5, 3, 7, 1e-9);
  mm_attention_step(energy, tiny, {1}, moved);
  const RowVector<Scalar> mean = tiny.colwise().mean();
  CHECK((moved.rowwise() - mean).cwiseAbs().maxCoeff() <= Scalar(1e-12));
}

TEST_CASE("steps may write over their input", "[step][alias]")
{
  const Matrix<double> Y = random_tokens<double>(6, 4, 12);
  const AttentionEnergy<double> energy(random_tokens<double>(4, 4, 13), 0.0);
  const AttentionEnergy<double> damped(random_tokens<double>(4, 4, 13), 0.4);
  const FeedForwardEnergy<double> ffn(test::random_symmetric<double>(4, 14, -0.9, 0.9),
                                      random_tokens<double>(1, 4, 15));
  Matrix<double> separate(6, 4), in_place = Y;

  mm_attention_step(energy, Y, {0.8}, separate);
  mm_attention_step(energy, in_place, {0.8}, in_place);
  CHECK(separate == in_place);

  in_place = Y;
  mm_attention_step(damped, Y, {0.8}, separate);
  mm_attention_step(damped, in_place, {0.8}, in_place);
  CHECK(separate == in_place);

  in_place = Y;
  gauss_seidel_mm_step(energy, Y, {1.0}, separate);
  gauss_seidel_mm_step(energy, in_place, {1.0}, in_place);
  CHECK(separate == in_place);

  in_place = Y;
  softmax_attention_step<double>(energy.factor(), Y, {0.5}, separate);
  softmax_attention_step<double>(energy.factor(), in_place, {0.5}, in_place);
  CHECK(separate == in_place);

  in_place = Y;
  feedforward_step(ffn, Y, {1.0, true}, separate);
  feedforward_step(ffn, in_place, {1.0, true}, in_place);
  CHECK(separate == in_place);

  in_place = Y;
  gradient_step(ffn, Y, {0.5}, separate);
  gradient_step(ffn, in_place, {0.5}, in_place);
  CHECK(separate == in_place);
}

TEST_CASE("steps reject bad input with the argument and the shapes", "[step][validation]")
{
  const Matrix<double> Y = random_tokens<double>(5, 4, 1);
  const AttentionEnergy<double> energy(random_tokens<double>(4, 3, 2), 0.0);
  const FeedForwardEnergy<double> ffn(Matrix<double>::Zero(4, 4), RowVector<double>::Zero(4));
  Matrix<double> out(5, 4);

  CHECK(invalid_argument_message([&] { mm_attention_step(energy, Y, {0.0}, out); }) ==
        "mm_attention_step: step_size = 0, expected a finite value > 0");
  CHECK(invalid_argument_message([&] { gauss_seidel_mm_step(energy, Y, {-1.0}, out); }) ==
        "gauss_seidel_mm_step: step_size = -1, expected a finite value > 0");
  CHECK(invalid_argument_message([&] { feedforward_step(ffn, Y, {-0.5, true}, out); }) ==
        "feedforward_step: step_size = -0.5, expected a finite value > 0");
  CHECK_THAT(invalid_argument_message([&] {
               mm_attention_step(energy, Y, {std::nan("")}, out);
             }),
             Catch::Contains("step_size = nan"));

  const Matrix<double> narrow = random_tokens<double>(5, 3, 3);
  Matrix<double> narrow_out(5, 3);
  CHECK(invalid_argument_message([&] { mm_attention_step(energy, narrow, {1.0}, narrow_out); }) ==
        "mm_attention_step: Y has 3 columns, expected d = 4");
  CHECK(invalid_argument_message([&] {
          softmax_attention_step<double>(energy.factor(), narrow, {1.0}, narrow_out);
        }) == "softmax_attention_step: Y has 3 columns, expected d = 4");
  Matrix<double> short_out(4, 4);
  CHECK(invalid_argument_message([&] { mm_attention_step(energy, Y, {1.0}, short_out); }) ==
        "mm_attention_step: Yout is 4 x 4, expected 5 x 4");

  Matrix<double> with_inf = Y;
  with_inf(4, 0) = std::numeric_limits<double>::infinity();
  CHECK_THAT(invalid_argument_message([&] { feedforward_step(ffn, with_inf, {1.0}, out); }),
             Catch::Contains("feedforward_step: Y (5 x 4) has a non-finite entry inf"));
  CHECK_THAT(invalid_argument_message([&] { MMAttentionStep<double>(energy, {0.0}); }),
             Catch::Contains("MMAttentionStep: step_size = 0"));
}
