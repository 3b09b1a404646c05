// Energies: value against a direct pairwise formula, gradients against central differences,
// the fused call against the separate ones, the concept, the spectral clamp, and bad input.

#include "helpers.hpp"

#include <cmath>

using namespace unfold;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;
using Kernels = unfold::test::WithScalars<ExpKernel, LogKernel, RationalKernel>;

namespace {

// Direct O(n^2 k) evaluation over unordered pairs, for comparison only.
template <class Scalar, class Kernel>
Scalar pairwise_energy_directly(const Matrix<Scalar>& Y, const Matrix<Scalar>& P, Scalar lambda)
{
  const Matrix<Scalar> Z = Y * P;
  Scalar total = 0;
  for (Eigen::Index i = 0; i < Z.rows(); ++i)
    for (Eigen::Index j = i + 1; j < Z.rows(); ++j)
      total += Kernel::rho(Scalar(0.5) * (Z.row(i) - Z.row(j)).squaredNorm());
  return total + Scalar(0.5) * lambda * Z.squaredNorm();
}

struct Shape {
  Eigen::Index n, d, k;
};

const Shape shapes[] = {{1, 1, 1}, {1, 4, 3}, {5, 1, 2}, {7, 4, 3}, {6, 5, 5}, {8, 3, 6},
                        {2, 2, 1}};

}  // namespace

TEMPLATE_LIST_TEST_CASE("attention energy equals the direct sum over unordered pairs",
                        "[energy]", Kernels)
{
  using Kernel = typename TestType::first_type;
  using Scalar = typename TestType::second_type;
  for (const Shape& s : shapes)
    for (const Scalar lambda : {Scalar(0), Scalar(0.7)}) {
      const std::uint64_t seed = 11 + std::uint64_t(s.n * 100 + s.d * 10 + s.k);
      INFO("seed " << seed << " n " << s.n << " d " << s.d << " k " << s.k);
      const Matrix<Scalar> Y = random_tokens<Scalar>(s.n, s.d, seed, 0.6);
      const Matrix<Scalar> P = random_tokens<Scalar>(s.d, s.k, seed + 1, 0.6);
      const AttentionEnergy<Scalar, Kernel> energy(P, lambda);
      const Scalar direct = pairwise_energy_directly<Scalar, Kernel>(Y, P, lambda);
      CHECK(energy.value(Y) == Approx(direct)
                                   .epsilon(Tolerance<Scalar>::exact)
                                   .margin(Tolerance<Scalar>::exact / 100));
    }
}

TEMPLATE_LIST_TEST_CASE("attention energy gradient matches central differences",
                        "[energy][gradient]", Kernels)
{
  using Kernel = typename TestType::first_type;
  using Scalar = typename TestType::second_type;
  for (const Shape& s : shapes)
    for (const Scalar lambda : {Scalar(0), Scalar(0.7)}) {
      const std::uint64_t seed = 23 + std::uint64_t(s.n * 100 + s.d * 10 + s.k);
      INFO("seed " << seed << " n " << s.n << " d " << s.d << " k " << s.k << " lambda "
                   << lambda);
      Matrix<Scalar> Y = random_tokens<Scalar>(s.n, s.d, seed, 0.6);
      if (s.n >= 3)
        Y.row(2) = Y.row(0);  // duplicate tokens
      const Matrix<Scalar> P = random_tokens<Scalar>(s.d, s.k, seed + 1, 0.6);
      const AttentionEnergy<Scalar, Kernel> energy(P, lambda);
      const auto result = check::gradient_check(energy, Y);
      INFO("relative error " << result.relative_error);
      CHECK(result.relative_error <= Tolerance<Scalar>::gradient);
    }
}

TEMPLATE_TEST_CASE("feed-forward energy and its parts pass the gradient check",
                   "[energy][gradient]", float, double)
{
  using Scalar = TestType;
  for (Eigen::Index d : {1, 3, 8}) {
    for (Eigen::Index n : {1, 4}) {
      const std::uint64_t seed = 1000 + std::uint64_t(10 * d + n);
      INFO("seed " << seed << " n " << n << " d " << d);
      const Matrix<Scalar> S =
          test::random_symmetric<Scalar>(d, seed, Scalar(-0.95), Scalar(0.95));
      const RowVector<Scalar> b = random_tokens<Scalar>(1, d, seed + 1);
      const FeedForwardEnergy<Scalar> ffn(S, b);
      const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, seed + 2);
      CHECK(check::gradient_check(ffn, Y).relative_error <= Tolerance<Scalar>::gradient);

      // The indicator at an interior point: value 0 and zero gradient.
      const Matrix<Scalar> positive = Y.cwiseAbs().array() + Scalar(0.5);
      const NonNegativeIndicator<Scalar> indicator(d);
      CHECK(indicator.value(positive) == Scalar(0));
      CHECK(check::gradient_check(indicator, positive).absolute_error == Scalar(0));

      // A sum keeps its components and adds their gradients.
      const AttentionEnergy<Scalar> attention(random_tokens<Scalar>(d, 2, seed + 3), Scalar(0));
      const SumEnergy<AttentionEnergy<Scalar>, FeedForwardEnergy<Scalar>> total(attention, ffn);
      const auto parts = total.components(Y);
      CHECK(parts[0] == attention.value(Y));
      CHECK(parts[1] == ffn.value(Y));
      CHECK(total.value(Y) == Approx(parts[0] + parts[1]).epsilon(Tolerance<Scalar>::exact));
      CHECK(check::gradient_check(total, Y).relative_error <= Tolerance<Scalar>::gradient);
    }
  }
}

TEMPLATE_TEST_CASE("feed-forward energy equals its defining formula", "[energy]", float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> S = test::random_symmetric<Scalar>(5, 3, Scalar(-0.5), Scalar(2));
  const RowVector<Scalar> b = random_tokens<Scalar>(1, 5, 4);
  const Matrix<Scalar> Y = random_tokens<Scalar>(6, 5, 5);
  const FeedForwardEnergy<Scalar> ffn(S, b);
  const Matrix<Scalar> ones_b = Vector<Scalar>::Ones(6) * b;
  const Scalar expected = Scalar(0.5) * (Y * S * Y.transpose()).trace() +
                          Scalar(0.5) * (Y - ones_b).squaredNorm();
  const Scalar tol = Tolerance<Scalar>::exact;
  CHECK(ffn.value(Y) == Approx(expected).epsilon(tol));

  const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eigen(S);
  CHECK(ffn.lipschitz() == Approx(eigen.eigenvalues().maxCoeff() + 1).epsilon(tol));
  CHECK(ffn.strong_convexity() == Approx(eigen.eigenvalues().minCoeff() + 1).epsilon(tol));
}

TEMPLATE_TEST_CASE("fused value_and_gradient agrees with value and gradient", "[energy]", float,
                   double)
{
  using Scalar = TestType;
  const Matrix<Scalar> Y = random_tokens<Scalar>(9, 4, 77, 0.7);
  const AttentionEnergy<Scalar, LogKernel> energy(random_tokens<Scalar>(4, 3, 78), Scalar(0.3));
  Matrix<Scalar> G1(9, 4), G2(9, 4);
  const Scalar fused = energy.value_and_gradient(Y, G1);
  energy.gradient(Y, G2);
  CHECK(fused == energy.value(Y));
  CHECK((G1 - G2).cwiseAbs().maxCoeff() == Scalar(0));
}

TEMPLATE_TEST_CASE("attention energy stays finite at huge and tiny norms", "[energy][edge]", float,
                   double)
{
  using Scalar = TestType;
  const Eigen::Index n = 6, d = 3;
  const Matrix<Scalar> P = random_tokens<Scalar>(d, d, 5);
  const AttentionEnergy<Scalar> energy(P, Scalar(0));
  Matrix<Scalar> G(n, d);

  // Far apart: every pair term underflows to 0, and so does the gradient.
  const Matrix<Scalar> huge = random_tokens<Scalar>(n, d, 6, 1e3);
  CHECK(std::isfinite(energy.value_and_gradient(huge, G)));
  CHECK(G.allFinite());
  CHECK(energy.value(huge) == Approx(0).margin(1e-6));

  // All together: every pair term is -1, so E = -n(n-1)/2, its lower bound.
  const Matrix<Scalar> tiny = random_tokens<Scalar>(n, d, 7, 1e-8);
  CHECK(energy.value(tiny) == Approx(-Scalar(n * (n - 1)) / 2).epsilon(1e-6));
  energy.gradient(tiny, G);
  CHECK(G.cwiseAbs().maxCoeff() <= Scalar(1e-6));
}

namespace {
struct NotAnEnergy {
  using Scalar = double;
  double value(const ConstMatrixRef<double>&) const { return 0; }
};
}  // namespace

TEST_CASE("the Energy concept accepts the library's energies and rejects others", "[concept]")
{
  STATIC_REQUIRE(Energy<AttentionEnergy<double>>);
  STATIC_REQUIRE(Energy<AttentionEnergy<float, LogKernel>>);
  STATIC_REQUIRE(Energy<FeedForwardEnergy<double>>);
  STATIC_REQUIRE(Energy<NonNegativeIndicator<float>>);
  STATIC_REQUIRE(Energy<SumEnergy<AttentionEnergy<double>, FeedForwardEnergy<double>>>);
  STATIC_REQUIRE(check_energy<AttentionEnergy<double>>());
  STATIC_REQUIRE_FALSE(Energy<NotAnEnergy>);
  STATIC_REQUIRE_FALSE(Energy<int>);
}

TEMPLATE_TEST_CASE("spectral clamp puts the eigenvalues in range and keeps the eigenvectors",
                   "[clamp]", float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> A = random_tokens<Scalar>(7, 7, 31, 2.0);
  const Matrix<Scalar> S = Scalar(0.5) * (A + A.transpose());
  const Matrix<Scalar> C = spectral_clamp(S, Scalar(-0.95), Scalar(0.95));
  const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> before(S), after(C);
  const Scalar tol = 100 * std::numeric_limits<Scalar>::epsilon();

  CHECK((C - C.transpose()).cwiseAbs().maxCoeff() == Scalar(0));
  CHECK(after.eigenvalues().minCoeff() >= Scalar(-0.95) - tol);
  CHECK(after.eigenvalues().maxCoeff() <= Scalar(0.95) + tol);
  const Vector<Scalar> expected = before.eigenvalues().cwiseMax(-0.95).cwiseMin(0.95);
  CHECK((after.eigenvalues() - expected).cwiseAbs().maxCoeff() <= 10 * tol);

  // Clamping twice changes nothing; an eigenvector keeps its direction.
  const Matrix<Scalar> twice = spectral_clamp(C, Scalar(-0.95), Scalar(0.95));
  CHECK((twice - C).cwiseAbs().maxCoeff() <= 10 * tol);
  const Vector<Scalar> u = before.eigenvectors().col(3);
  CHECK((C * u - expected(3) * u).norm() <= 10 * tol);
}

TEST_CASE("energies reject bad input with the argument and the shapes", "[energy][validation]")
{
  const Matrix<double> P = random_tokens<double>(4, 3, 1);
  const AttentionEnergy<double> energy(P, 0.0);
  const Matrix<double> wrong_width = random_tokens<double>(5, 3, 2);

  CHECK(invalid_argument_message([&] { energy.value(wrong_width); }) ==
        "AttentionEnergy::value: Y has 3 columns, expected d = 4");

  Matrix<double> G(5, 3);
  const Matrix<double> Y = random_tokens<double>(5, 4, 3);
  CHECK(invalid_argument_message([&] { energy.gradient(Y, G); }) ==
        "AttentionEnergy::value_and_gradient: G is 5 x 3, expected 5 x 4");

  Matrix<double> with_nan = Y;
  with_nan(2, 1) = std::nan("");
  CHECK_THAT(invalid_argument_message([&] { energy.value(with_nan); }),
             Catch::Contains("Y (5 x 4) has a non-finite entry") &&
                 Catch::Contains("at (2, 1)"));

  CHECK_THAT(invalid_argument_message([&] { AttentionEnergy<double>(P, -1.0); }),
             Catch::Contains("AttentionEnergy: lambda = -1"));
  Matrix<double> P_inf = P;
  P_inf(0, 0) = std::numeric_limits<double>::infinity();
  CHECK_THAT(invalid_argument_message([&] { AttentionEnergy<double>{P_inf}; }),
             Catch::Contains("AttentionEnergy: P (4 x 3) has a non-finite entry"));
  CHECK_THAT(invalid_argument_message([&] { AttentionEnergy<double>{Matrix<double>(0, 3)}; }),
             Catch::Contains("P is 0 x 3"));

  Matrix<double> S = test::random_symmetric<double>(4, 4, -0.5, 0.5);
  S(0, 1) += 0.1;
  const RowVector<double> b = RowVector<double>::Zero(4);
  CHECK_THAT(invalid_argument_message([&] { FeedForwardEnergy<double>(S, b); }),
             Catch::Contains("FeedForwardEnergy: S (4 x 4) is not symmetric"));
  CHECK_THAT(invalid_argument_message([&] {
               FeedForwardEnergy<double>(Matrix<double>::Identity(4, 3), b);
             }),
             Catch::Contains("S is 4 x 3, expected a square matrix"));
  CHECK(invalid_argument_message([&] {
          FeedForwardEnergy<double>(Matrix<double>::Identity(4, 4), RowVector<double>::Zero(3));
        }) == "FeedForwardEnergy: b is 1 x 3, expected 1 x 4");
  CHECK_THAT(invalid_argument_message([&] { spectral_clamp(Matrix<double>(S), 1.0, 0.0); }),
             Catch::Contains("spectral_clamp: S (4 x 4) is not symmetric"));
  CHECK_THAT(invalid_argument_message([&] {
               spectral_clamp(Matrix<double>(Matrix<double>::Identity(3, 3)), 1.0, 0.0);
             }),
             Catch::Contains("spectral_clamp: lo = 1 > hi = 0"));
}
