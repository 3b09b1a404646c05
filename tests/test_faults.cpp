// Regression tests named after faults that other attention and energy code has shipped.

#include "helpers.hpp"

#include <cmath>

using namespace unfold;
using unfold::test::random_tokens;

TEST_CASE("a step size from an underestimated Lipschitz constant diverges; ours are exact",
          "[faults][lipschitz]")
{
  // 0.5 ||A x - b||^2 with A = diag(1, sqrt(0.4)) has Hessian diag(1, 0.4) and L = 1. Ten
  // power iterations from (1e-6, 1) see almost only the second eigenvalue: about 0.40005.
  Vector<double> v(2);
  v << 1e-6, 1;
  const Eigen::Vector2d hessian(1.0, 0.4);
  for (int k = 0; k < 10; ++k) {
    const Vector<double> w = hessian.asDiagonal() * v;
    v = w / w.norm();
  }
  const double estimate = v.dot(hessian.asDiagonal() * v);
  CHECK(estimate == Approx(0.40005).epsilon(1e-4));

  // The same quadratic as a feed-forward energy: S + I = diag(1, 0.4).
  Matrix<double> S(2, 2);
  S << 0.0, 0.0, 0.0, -0.6;
  const FeedForwardEnergy<double> energy(S, RowVector<double>::Zero(2));
  CHECK(energy.lipschitz() == Approx(1.0).epsilon(1e-15));

  // With the estimate, alpha = 1.9 / 0.40005 > 2 / L, and the iteration diverges; with the
  // library's own constant it descends.
  Matrix<double> Y(1, 2);
  Y << 1.0, 1.0;
  Matrix<double> bad = Y, good = Y;
  for (int k = 0; k < 20; ++k) {
    gradient_step(energy, bad, {1.9 / estimate}, bad);
    const double before = energy.value(good);
    gradient_step(energy, good, {1.9 / energy.lipschitz()}, good);
    CHECK(energy.value(good) <= before);
  }
  CHECK(energy.value(bad) > 1e6 * energy.value(Y));
  CHECK(feedforward_bound(energy, {1.9 / energy.lipschitz(), false}).holds());
  CHECK_FALSE(feedforward_bound(energy, {1.9 / estimate, false}).holds());
}

TEST_CASE("a proximal step is not a gradient shrink", "[faults][prox]")
{
  // prox of (eta lambda / 2) ||v||^2 at v = (1, -2) with eta lambda = 2.5 is v / 3.5.
  const SquaredNormEnergy<double> norm(2, 2.5);
  Matrix<double> v(1, 2), out(1, 2);
  v << 1, -2;
  norm.prox(v, 1.0, out);
  CHECK(out(0, 0) == Approx(0.2857143).epsilon(1e-6));
  CHECK(out(0, 1) == Approx(-0.5714286).epsilon(1e-6));

  // The gradient step with the same size overshoots to (-1.5, 3).
  Matrix<double> shrink(1, 2);
  gradient_step(norm, v, {1.0}, shrink);
  CHECK(shrink(0, 0) == Approx(-1.5));
  CHECK(shrink(0, 1) == Approx(3.0));

  // proximal_gradient_step uses the step-size-aware prox: here E = 0.5 ||Y - 1b||^2 (S = 0).
  const FeedForwardEnergy<double> zero(Matrix<double>::Zero(2, 2), RowVector<double>::Zero(2));
  Matrix<double> step(1, 2);
  proximal_gradient_step(zero, norm, v, {1.0}, step);
  CHECK(step.cwiseAbs().maxCoeff() == 0.0);  // the gradient step lands on b = 0, prox keeps it
  proximal_gradient_step(zero, norm, v, {0.5}, step);
  CHECK((step - 0.5 * v / 2.25).cwiseAbs().maxCoeff() <= 1e-15);
  CHECK(check::gradient_check(norm, random_tokens<double>(3, 2, 1)).passed());
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
