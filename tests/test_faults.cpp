// Regression tests named after faults that other attention and energy code has shipped.

#include "helpers.hpp"

#include <cmath>
#include <limits>

using namespace unfold;
using unfold::test::random_tokens;

TEMPLATE_TEST_CASE("a step size from an underestimated Lipschitz constant diverges; ours are "
                   "exact",
                   "[faults][lipschitz]", float, double)
{
  using Scalar = TestType;
  const Scalar eps = std::numeric_limits<Scalar>::epsilon();
  // 0.5 ||A x - b||^2 with A = diag(1, sqrt(0.4)) has Hessian diag(1, 0.4) and L = 1. Ten
  // power iterations from (1e-6, 1) see almost only the second eigenvalue: about 0.40005.
  Vector<Scalar> v(2);
  v << 1e-6, 1;
  const Vector<Scalar> hessian = (Vector<Scalar>(2) << 1, Scalar(0.4)).finished();
  for (int k = 0; k < 10; ++k) {
    const Vector<Scalar> w = hessian.asDiagonal() * v;
    v = w / w.norm();
  }
  const Scalar estimate = v.dot(hessian.asDiagonal() * v);
  CHECK(estimate == Approx(0.40005).epsilon(1e-4));

  // The same quadratic as a feed-forward energy: S + I = diag(1, 0.4).
  Matrix<Scalar> S(2, 2);
  S << 0, 0, 0, Scalar(-0.6);
  const FeedForwardEnergy<Scalar> energy(S, RowVector<Scalar>::Zero(2));
  CHECK(energy.lipschitz() == Approx(1.0).epsilon(4 * eps));

  // With the estimate, alpha = 1.9 / 0.40005 > 2 / L, and the iteration diverges; with the
  // library's own constant it descends.
  Matrix<Scalar> Y(1, 2);
  Y << 1, 1;
  Matrix<Scalar> bad = Y, good = Y;
  for (int k = 0; k < 20; ++k) {
    gradient_step(energy, bad, {Scalar(1.9) / estimate}, bad);
    const Scalar before = energy.value(good);
    gradient_step(energy, good, {Scalar(1.9) / energy.lipschitz()}, good);
    CHECK(energy.value(good) <= before);
  }
  CHECK(energy.value(bad) > Scalar(1e6) * energy.value(Y));
  CHECK(feedforward_bound(energy, {Scalar(1.9) / energy.lipschitz(), false}).holds());
  CHECK_FALSE(feedforward_bound(energy, {Scalar(1.9) / estimate, false}).holds());
}

TEMPLATE_TEST_CASE("a proximal step is not a gradient shrink", "[faults][prox]", float, double)
{
  using Scalar = TestType;
  const Scalar eps = std::numeric_limits<Scalar>::epsilon();
  // prox of (eta lambda / 2) ||v||^2 at v = (1, -2) with eta lambda = 2.5 is v / 3.5.
  const SquaredNormEnergy<Scalar> norm(2, Scalar(2.5));
  Matrix<Scalar> v(1, 2), out(1, 2);
  v << 1, -2;
  norm.prox(v, Scalar(1), out);
  CHECK(out(0, 0) == Approx(0.2857143).epsilon(1e-6));
  CHECK(out(0, 1) == Approx(-0.5714286).epsilon(1e-6));

  // The gradient step with the same size overshoots to (-1.5, 3).
  Matrix<Scalar> shrink(1, 2);
  gradient_step(norm, v, {Scalar(1)}, shrink);
  CHECK(shrink(0, 0) == Approx(-1.5));
  CHECK(shrink(0, 1) == Approx(3.0));

  // proximal_gradient_step uses the step-size-aware prox: here E = 0.5 ||Y - 1b||^2 (S = 0).
  const FeedForwardEnergy<Scalar> zero(Matrix<Scalar>::Zero(2, 2), RowVector<Scalar>::Zero(2));
  Matrix<Scalar> step(1, 2);
  proximal_gradient_step(zero, norm, v, {Scalar(1)}, step);
  // The gradient step lands on b = 0, and the prox keeps it there.
  CHECK(step.cwiseAbs().maxCoeff() == Scalar(0));
  proximal_gradient_step(zero, norm, v, {Scalar(0.5)}, step);
  CHECK((step - Scalar(0.5) * v / Scalar(2.25)).cwiseAbs().maxCoeff() <= 4 * eps);
  CHECK(check::gradient_check(norm, random_tokens<Scalar>(3, 2, 1)).passed());
}

TEMPLATE_TEST_CASE("finite-difference checks pick their step and tolerance from the scalar type",
                   "[faults][gradient]", float, double)
{
  using Scalar = TestType;
  const AttentionEnergy<Scalar> energy(random_tokens<Scalar>(4, 3, 1, 0.7));
  const Matrix<Scalar> Y = random_tokens<Scalar>(6, 4, 2, 0.7);
  const auto result = check::gradient_check(energy, Y);
  INFO("worst |g - fd| / (atol + rtol |fd|) = " << result.worst_ratio << ", relative error "
                                                << result.relative_error);
  CHECK(result.passed());

  // A wrong gradient is caught in both types: the energy scaled by 1.01 in value only.
  struct Skewed {
    using Scalar = TestType;
    AttentionEnergy<Scalar> inner;
    static constexpr std::string_view name() { return "skewed"; }
    Eigen::Index dim() const { return inner.dim(); }
    Scalar value(const ConstMatrixRef<Scalar>& X) const { return Scalar(1.01) * inner.value(X); }
    void gradient(const ConstMatrixRef<Scalar>& X, MatrixRef<Scalar> G) const
    {
      inner.gradient(X, G);
    }
    Scalar value_and_gradient(const ConstMatrixRef<Scalar>& X, MatrixRef<Scalar> G) const
    {
      inner.gradient(X, G);
      return value(X);
    }
  };
  CHECK_FALSE(check::gradient_check(Skewed{energy}, Y).passed());
}
