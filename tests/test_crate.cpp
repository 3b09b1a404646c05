// CRATE: the coding rate against its definition and central differences, the exact gradient
// step and MSSA beside it, the sparse-coding energy and its ISTA step, CRATE's ISTA block, the
// per-layer coding rate and sparsity, edge cases and bad input.

#include "helpers.hpp"

#include <unfold/energy/crate.hpp>
#include <unfold/step/crate.hpp>

#include <Eigen/Eigenvalues>

#include <cmath>
#include <limits>
#include <vector>

using namespace unfold;
using unfold::test::did_not_rise;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;

namespace {

// A random d x d orthogonal matrix: the eigenvectors of a random symmetric matrix.
template <class Scalar>
Matrix<Scalar> random_orthogonal(Eigen::Index d, std::uint64_t seed)
{
  const Matrix<double> A = random_tokens<double>(d, d, seed);
  const Eigen::SelfAdjointEigenSolver<Matrix<double>> eigen(A + A.transpose());
  return eigen.eigenvectors().cast<Scalar>();
}

// K subspaces of width p. `complete`: the column blocks of one orthogonal matrix (d = K p,
// sum U_k U_k^T = I); otherwise each from its own orthogonal matrix (they overlap).
template <class Scalar>
std::vector<Matrix<Scalar>> random_bases(Eigen::Index d, Eigen::Index K, Eigen::Index p,
                                         std::uint64_t seed, bool complete)
{
  std::vector<Matrix<Scalar>> U;
  const Matrix<Scalar> Q = random_orthogonal<Scalar>(d, seed);
  for (Eigen::Index k = 0; k < K; ++k)
    U.push_back(complete ? Matrix<Scalar>(Q.middleCols(k * p, p))
                         : Matrix<Scalar>(random_orthogonal<Scalar>(d, seed + 1 + k).leftCols(p)));
  return U;
}

// 0.5 logdet(I_n + a W W^T) summed over k: the paper's n x n form, through an LDLT.
double coding_rate_directly(const std::vector<Matrix<double>>& U, double eps,
                            const Matrix<double>& Z)
{
  const Eigen::Index n = Z.rows();
  double total = 0;
  for (const Matrix<double>& Uk : U) {
    const double a = double(Uk.cols()) / (double(n) * eps * eps);
    const Matrix<double> W = Z * Uk;
    const Matrix<double> A = Matrix<double>::Identity(n, n) + a * W * W.transpose();
    const Eigen::LDLT<Matrix<double>> ldlt(A);
    total += 0.5 * ldlt.vectorD().array().log().sum();
  }
  return total;
}

struct Shape {
  Eigen::Index n, d, K, p;
  bool complete;
};

const Shape shapes[] = {{1, 1, 1, 1, true},  {1, 4, 2, 2, true},  {2, 3, 3, 1, true},
                        {5, 6, 2, 3, true},  {7, 4, 3, 2, false}, {4, 5, 1, 5, true},
                        {6, 8, 4, 2, false}, {3, 2, 2, 1, false}};

}  // namespace

TEMPLATE_TEST_CASE("coding rate equals the paper's n x n determinant form", "[crate][energy]",
                   float, double)
{
  using Scalar = TestType;
  for (const Shape& s : shapes)
    for (const Scalar eps : {Scalar(0.3), Scalar(1)}) {
      const std::uint64_t seed = 10 + std::uint64_t(s.n * 100 + s.d * 10 + s.K);
      INFO("seed " << seed << " n " << s.n << " d " << s.d << " K " << s.K << " p " << s.p);
      const auto U = random_bases<Scalar>(s.d, s.K, s.p, seed, s.complete);
      const CodingRateEnergy<Scalar> energy(U, eps);
      const Matrix<Scalar> Z = random_tokens<Scalar>(s.n, s.d, seed + 1);
      // The determinant form evaluated in double on the same inputs.
      std::vector<Matrix<double>> U_wide;
      for (const Matrix<Scalar>& Uk : U)
        U_wide.push_back(Uk.template cast<double>());
      const double direct = coding_rate_directly(U_wide, double(eps), Z.template cast<double>());
      CHECK(energy.value(Z) == Approx(direct).epsilon(Tolerance<Scalar>::exact));
      const auto terms = energy.per_subspace(Z);
      REQUIRE(terms.size() == std::size_t(s.K));
      Scalar sum = 0;
      for (const Scalar t : terms) {
        CHECK(t >= Scalar(0));
        sum += t;
      }
      CHECK(sum == Approx(energy.value(Z)).epsilon(64 * std::numeric_limits<Scalar>::epsilon()));
      CHECK(energy.scale(0, s.n) == Approx(Scalar(s.p) / (Scalar(s.n) * eps * eps)));
    }
}

TEMPLATE_TEST_CASE("coding rate gradient matches central differences", "[crate][gradient]",
                   float, double)
{
  using Scalar = TestType;
  for (const Shape& s : shapes)
    for (const Scalar eps : {Scalar(0.3), Scalar(1)}) {
      const std::uint64_t seed = 20 + std::uint64_t(s.n * 100 + s.d * 10 + s.K);
      INFO("seed " << seed << " n " << s.n << " d " << s.d << " K " << s.K << " p " << s.p
                   << " eps " << eps);
      const CodingRateEnergy<Scalar> energy(random_bases<Scalar>(s.d, s.K, s.p, seed, s.complete),
                                            eps);
      Matrix<Scalar> Z = random_tokens<Scalar>(s.n, s.d, seed + 1);
      if (s.n >= 3)
        Z.row(2) = Z.row(0);  // duplicate tokens
      const auto result = check::gradient_check(energy, Z);
      INFO("relative error " << result.relative_error);
      CHECK(result.relative_error <= Tolerance<Scalar>::gradient);

      Matrix<Scalar> G1(s.n, s.d), G2(s.n, s.d);
      CHECK(energy.value_and_gradient(Z, G1) == energy.value(Z));
      energy.gradient(Z, G2);
      CHECK(G1 == G2);
    }
}

TEMPLATE_TEST_CASE("an exact gradient step on the coding rate lowers it (CRATE compresses)",
                   "[crate][descent]", float, double)
{
  using Scalar = TestType;
  int steps = 0;
  for (std::uint64_t seed = 100; seed < 130; ++seed)
    for (double scale : {0.1, 1.0, 5.0}) {
      const Eigen::Index p = 1 + Eigen::Index(seed % 3), K = 1 + Eigen::Index((seed / 3) % 3);
      const bool complete = seed % 2 == 0;
      const Eigen::Index d = complete ? K * p : p + Eigen::Index(seed % 4);
      const Eigen::Index n = 1 + Eigen::Index(seed % 8);
      INFO("seed " << seed << " scale " << scale << " n " << n << " d " << d << " K " << K);
      const CodingRateEnergy<Scalar> energy(random_bases<Scalar>(d, K, p, seed, complete),
                                            Scalar(0.5));
      const Matrix<Scalar> Z = random_tokens<Scalar>(n, d, seed + 7, scale);
      Matrix<Scalar> G(n, d), out(n, d);
      const Scalar before = energy.value_and_gradient(Z, G);
      const Scalar L = energy.lipschitz(n);
      for (Scalar alpha : {Scalar(0.1) / L, Scalar(1) / L, Scalar(2) / L}) {
        coding_rate_gradient_step(energy, Z, {alpha}, out);
        const Scalar after = energy.value(out);
        CHECK(did_not_rise(before, after));
        // R(Z+) <= R(Z) - alpha (1 - alpha L / 2) ||grad||^2.
        CHECK(did_not_rise(before - alpha * (1 - alpha * L / 2) * G.squaredNorm(), after));
        CHECK(coding_rate_gradient_bound(energy, n, {alpha}).holds());
        ++steps;
      }
      // Strictly lower inside the bound, where the guaranteed decrease is positive.
      coding_rate_gradient_step(energy, Z, {Scalar(1) / L}, out);
      if (G.norm() > Scalar(1e-3))
        CHECK(energy.value(out) < before);
    }
  CHECK(steps == 270);
}

TEMPLATE_TEST_CASE("coding rate curvature bound is p / (n eps^2) for complete orthogonal bases",
                   "[crate][bound]", float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;
  const CodingRateEnergy<Scalar> complete(random_bases<Scalar>(6, 3, 2, 1, true), Scalar(0.5));
  CHECK(complete.lipschitz(4) == Approx(2.0 / (4 * 0.25)).epsilon(tol));
  const CodingRateEnergy<Scalar> overlapping(random_bases<Scalar>(6, 3, 2, 1, false),
                                             Scalar(0.5));
  CHECK(overlapping.lipschitz(4) > complete.lipschitz(4));
  CHECK(overlapping.lipschitz(4) <= 3 * complete.lipschitz(4) * (1 + tol));
  CHECK_FALSE(
      coding_rate_gradient_bound(complete, 4, {Scalar(2.01) / complete.lipschitz(4)}).holds());
}

TEMPLATE_TEST_CASE("MSSA step equals its formula and, with complete bases, a step along "
                   "-(W - softmax(W W^T) W) U^T",
                   "[crate][mssa]", float, double)
{
  using Scalar = TestType;
  const Eigen::Index n = 7, d = 6;
  const auto U = random_bases<Scalar>(d, 3, 2, 3, true);
  const CodingRateEnergy<Scalar> energy(U, Scalar(0.5));
  const Matrix<Scalar> Z = random_tokens<Scalar>(n, d, 4, 0.8);
  Matrix<Scalar> out(n, d);
  mssa_step(energy, Z, {Scalar(0.4)}, out);

  Matrix<Scalar> heads = Matrix<Scalar>::Zero(n, d), direction = Matrix<Scalar>::Zero(n, d);
  for (const Matrix<Scalar>& Uk : U) {
    const Matrix<Scalar> W = Z * Uk;
    const Matrix<Scalar> logits = W * W.transpose();
    Matrix<Scalar> S = (logits.colwise() - logits.rowwise().maxCoeff()).array().exp();
    S = S.array().colwise() / S.rowwise().sum().array();
    heads += S * W * Uk.transpose();
    direction += (W - S * W) * Uk.transpose();
  }
  CHECK((out - (Scalar(0.6) * Z + Scalar(0.4) * heads)).cwiseAbs().maxCoeff() <=
        Tolerance<Scalar>::exact);
  CHECK((out - (Z - Scalar(0.4) * direction)).cwiseAbs().maxCoeff() <=
        10 * Tolerance<Scalar>::exact);
}

TEMPLATE_TEST_CASE("MSSA carries no descent guarantee: it lowered the coding rate at small "
                   "scale and raised it at large scale",
                   "[crate][mssa][measured]", float, double)
{
  using Scalar = TestType;
  // Measured on these problems (complete orthogonal bases, eps = 0.5, kappa = 0.5): token
  // scale 0.1 never raised R_c; at scale 3 more than half of the problems did.
  int raised_small = 0, raised_large = 0, problems = 0;
  for (std::uint64_t seed = 1; seed < 100; ++seed) {
    const Eigen::Index p = 1 + Eigen::Index(seed % 3), K = 1 + Eigen::Index(seed % 3);
    const Eigen::Index n = 2 + Eigen::Index(seed % 8);
    const CodingRateEnergy<Scalar> energy(random_bases<Scalar>(K * p, K, p, seed, true),
                                          Scalar(0.5));
    Matrix<Scalar> out(n, K * p);
    for (double scale : {0.1, 3.0}) {
      const Matrix<Scalar> Z = random_tokens<Scalar>(n, K * p, seed + 50, scale);
      mssa_step(energy, Z, {Scalar(0.5)}, out);
      if (!test::did_not_rise(energy.value(Z), energy.value(out)))
        ++(scale < 1 ? raised_small : raised_large);
    }
    ++problems;
  }
  INFO("raised at scale 0.1: " << raised_small << ", at scale 3: " << raised_large << " of "
                               << problems);
  CHECK(raised_small == 0);
  CHECK(raised_large > problems / 2);
  CHECK(mssa_bound<Scalar>({Scalar(0.5)}).max_step_size == Scalar(0));
}

TEMPLATE_TEST_CASE("sparse-coding energy: smooth part and full energy pass the gradient check",
                   "[crate][gradient]", float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::gradient;
  for (Eigen::Index d : {1, 3, 6})
    for (Eigen::Index n : {1, 4}) {
      const std::uint64_t seed = 300 + std::uint64_t(10 * d + n);
      INFO("seed " << seed << " n " << n << " d " << d);
      const Matrix<Scalar> D = random_tokens<Scalar>(d, d, seed, 0.5);
      const Matrix<Scalar> Z = random_tokens<Scalar>(n, d, seed + 1);
      const Matrix<Scalar> X = random_tokens<Scalar>(n, d, seed + 2);

      // The smooth part 0.5 ||Z - X D||^2 alone.
      const SparseCodingEnergy<Scalar> smooth(D, Scalar(0), Z, false);
      CHECK(smooth.value(X) == Approx(Scalar(0.5) * (Z - X * D).squaredNorm())
                                   .epsilon(64 * std::numeric_limits<Scalar>::epsilon()));
      CHECK(smooth.smooth_value(X) == smooth.value(X));
      const Scalar smooth_error = check::gradient_check(smooth, X).relative_error;
      INFO("smooth part relative error " << smooth_error);
      CHECK(smooth_error <= tol);

      // With lambda ||X||_1, away from zero entries (|x| >= 0.05 > the difference step, also
      // the float step 5e-3).
      Matrix<Scalar> away = X;
      for (Eigen::Index j = 0; j < d; ++j)
        for (Eigen::Index i = 0; i < n; ++i)
          away(i, j) += away(i, j) >= 0 ? Scalar(0.05) : Scalar(-0.05);
      const SparseCodingEnergy<Scalar> lasso(D, Scalar(0.3), Z, false);
      const SparseCodingEnergy<Scalar> nonneg(D, Scalar(0.3), Z, true);
      const Matrix<Scalar> positive = away.cwiseAbs();
      const Scalar lasso_error = check::gradient_check(lasso, away).relative_error;
      const Scalar nonneg_error = check::gradient_check(nonneg, positive).relative_error;
      INFO("lasso relative error " << lasso_error << ", non-negative " << nonneg_error);
      CHECK(lasso_error <= tol);
      CHECK(nonneg_error <= tol);
      CHECK(nonneg.value(positive) == Approx(Scalar(0.3) * positive.sum() +
                                             Scalar(0.5) * (Z - positive * D).squaredNorm())
                                          .epsilon(Tolerance<Scalar>::exact));
    }
}

TEMPLATE_TEST_CASE("ISTA step descends lambda ||X||_1 + 0.5 ||Z - X D||^2 + indicator(X >= 0) "
                   "for eta <= 1 / ||D||_2^2",
                   "[crate][ista][descent]", float, double)
{
  using Scalar = TestType;
  int steps = 0;
  for (std::uint64_t seed = 400; seed < 430; ++seed)
    for (double scale : {0.1, 1.0, 10.0}) {
      const Eigen::Index n = 1 + Eigen::Index(seed % 6), d = 1 + Eigen::Index(seed % 7);
      INFO("seed " << seed << " scale " << scale << " n " << n << " d " << d);
      const Matrix<Scalar> D = random_tokens<Scalar>(d, d, seed, 0.6);
      const Matrix<Scalar> Z = random_tokens<Scalar>(n, d, seed + 1, scale);
      const Scalar lambda = Scalar(0.1 * scale);
      const SparseCodingEnergy<Scalar> nonneg(D, lambda, Z, true);
      const SparseCodingEnergy<Scalar> lasso(D, lambda, Z, false);
      const Scalar L = nonneg.lipschitz();
      const Matrix<Scalar> X = random_tokens<Scalar>(n, d, seed + 2, scale).cwiseAbs();
      Matrix<Scalar> out(n, d);

      for (Scalar eta : {Scalar(0.5) / L, Scalar(1) / L, Scalar(2) / L}) {
        // Non-negative lasso from a feasible X, and from X = ReLU(Z).
        for (const Matrix<Scalar>& start : {X, Matrix<Scalar>(Z.cwiseMax(Scalar(0)))}) {
          ista_step(nonneg, start, {eta}, out);
          CHECK((out.array() >= Scalar(0)).all());
          const Scalar before = nonneg.value(start), after = nonneg.value(out);
          CHECK(did_not_rise(before, after));
          // F(X+) <= F(X) - (1/eta - L/2) ||X+ - X||^2.
          const Scalar guaranteed = (1 / eta - L / 2) * (out - start).squaredNorm();
          CHECK(did_not_rise(before - guaranteed, after));
          CHECK(ista_bound(nonneg, start, {eta}).holds());
          ++steps;
        }
        // Plain lasso (soft thresholding) from any X.
        ista_step(lasso, Z, {eta}, out);
        CHECK(did_not_rise(lasso.value(Z), lasso.value(out)));
      }
    }
  CHECK(steps == 540);
}

TEMPLATE_TEST_CASE("CRATE's ISTA block is ReLU(Z + eta (Z - Z D) D^T - eta lambda)",
                   "[crate][ista]", float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> D = random_tokens<Scalar>(5, 5, 500, 0.5);
  const Matrix<Scalar> Z = random_tokens<Scalar>(6, 5, 501);
  Matrix<Scalar> out(6, 5);
  crate_ista_step<Scalar>(D, Scalar(0.1), Z, {Scalar(0.2)}, out);
  Matrix<Scalar> expected = Z + Scalar(0.2) * (Z - Z * D) * D.transpose();
  expected = (expected.array() - Scalar(0.02)).cwiseMax(Scalar(0)).matrix();
  CHECK((out - expected).cwiseAbs().maxCoeff() <= Tolerance<Scalar>::exact);
  CHECK(sparsity(out) > Scalar(0));

  // It is ISTA on the energy whose signal is Z, started at X = Z.
  Matrix<Scalar> generic(6, 5);
  ista_step(SparseCodingEnergy<Scalar>(D, Scalar(0.1), Z), Z, {Scalar(0.2)}, generic);
  CHECK(generic == out);

  // From non-negative tokens X = Z is feasible and the block descends its own energy.
  const Matrix<Scalar> Zpos = Z.cwiseAbs();
  const SparseCodingEnergy<Scalar> energy(D, Scalar(0.1), Zpos, true);
  const IstaParams<Scalar> safe{Scalar(1) / energy.lipschitz()};
  crate_ista_step<Scalar>(D, Scalar(0.1), Zpos, safe, out);
  CHECK(did_not_rise(energy.value(Zpos), energy.value(out)));
}

// Double only: 1e-300, a non-zero entry that must not count, is 0 in float; float is checked
// on its own below.
TEST_CASE("sparsity is the fraction of exact zeros", "[crate][stats]")
{
  Matrix<double> Z(2, 3);
  Z << 0, 1, 0, -0.0, 2, 1e-300;
  CHECK(sparsity(Z) == Approx(0.5));
  CHECK(sparsity(Matrix<float>::Zero(3, 3)) == 1.0f);
  CHECK(sparsity(Matrix<double>(0, 3)) == 0.0);
}

TEST_CASE("a CRATE forward pass reports the coding rate and the sparsity after every layer",
          "[crate][stats]")
{
  const Eigen::Index n = 8, d = 6;
  std::vector<CrateLayer<double>> layers;
  for (std::uint64_t seed : {600, 601, 602})
    layers.push_back({CodingRateEnergy<double>(random_bases<double>(d, 3, 2, seed, true), 0.5),
                      random_tokens<double>(d, d, seed + 10, 0.4), 0.1, {0.5}, {0.1}});
  const Matrix<double> Z = random_tokens<double>(n, d, 603);
  const auto result = crate_forward(layers, Z);

  REQUIRE(result.stats.size() == 4);
  CHECK(result.stats[0].coding_rate == layers[0].compression.value(Z));
  CHECK(result.stats[0].sparsity == 0.0);
  Matrix<double> by_hand = Z;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    crate_layer_step(layers[l], by_hand, by_hand);
    CHECK(result.stats[l + 1].coding_rate == layers[l].compression.value(by_hand));
    CHECK(result.stats[l + 1].sparsity == sparsity(by_hand));
  }
  // The first ISTA block meets tokens of both signs, and its ReLU zeros some of them.
  CHECK(result.stats[1].sparsity > 0.0);
  CHECK(result.tokens == by_hand);
  CHECK((result.tokens.array() >= 0).all());
}

TEMPLATE_TEST_CASE("CRATE steps run in the unfolding operator and the trace tells them apart",
                   "[crate][stack]", float, double)
{
  using Scalar = TestType;
  const CodingRateEnergy<Scalar> rate(random_bases<Scalar>(6, 3, 2, 700, true), Scalar(0.5));
  const Matrix<Scalar> Z = random_tokens<Scalar>(5, 6, 701);
  RunOptions<Scalar> options;
  options.check_bounds = true;

  const Scalar alpha = Scalar(1) / rate.lipschitz(5);
  const auto exact = run(tied(Layer(CodingRateGradientStep<Scalar>(rate, {alpha})), 10), Z,
                         options);
  CHECK(exact.trace.monotonicity().monotone);
  CHECK(*exact.trace.entries[1].bound_holds);
  CHECK(exact.trace.entries.back().total < exact.trace.entries.front().total);

  const auto mssa = run(tied(Layer(MSSAStep<Scalar>(rate, {Scalar(0.5)})), 3), Z, options);
  CHECK(mssa.completed);
  CHECK_FALSE(*mssa.trace.entries[1].bound_holds);

  // Unfolded ISTA on one sparse-coding problem, from a feasible code.
  const SparseCodingEnergy<Scalar> code(random_tokens<Scalar>(6, 6, 702, 0.5), Scalar(0.1), Z);
  const IstaStep<Scalar> ista(code, {Scalar(1) / code.lipschitz()});
  const Matrix<Scalar> X0 = Matrix<Scalar>::Zero(5, 6);
  const auto lasso = run(tied(Layer(ista), 20), X0, options);
  CHECK(lasso.trace.monotonicity().monotone);
  for (std::size_t i = 1; i < lasso.trace.entries.size(); ++i)
    CHECK(*lasso.trace.entries[i].bound_holds);
}

TEMPLATE_TEST_CASE("CRATE energies and steps handle one token, one feature, duplicates and "
                   "extreme norms",
                   "[crate][edge]", float, double)
{
  using Scalar = TestType;

  // d = 1, n = 1: R_c = 0.5 log(1 + z^2 / eps^2); MSSA with one token returns it.
  const CodingRateEnergy<Scalar> line({Matrix<Scalar>::Ones(1, 1)}, Scalar(0.5));
  Matrix<Scalar> z(1, 1), out1(1, 1);
  z << Scalar(0.7);
  CHECK(line.value(z) == Approx(0.5 * std::log(1 + 0.49 / 0.25)).epsilon(1e-6));
  mssa_step(line, z, {Scalar(0.5)}, out1);
  CHECK(out1(0, 0) == Approx(z(0, 0)).epsilon(1e-6));

  const CodingRateEnergy<Scalar> energy(random_bases<Scalar>(6, 3, 2, 800, true), Scalar(0.5));
  Matrix<Scalar> G(5, 6), out(5, 6);

  // Duplicates stay duplicates under MSSA.
  Matrix<Scalar> dup = random_tokens<Scalar>(5, 6, 801);
  dup.row(3) = dup.row(0);
  mssa_step(energy, dup, {Scalar(0.5)}, out);
  CHECK((out.row(3) - out.row(0)).cwiseAbs().maxCoeff() <= Tolerance<Scalar>::exact);

  // Huge and tiny tokens: finite rates, gradients and steps; the rate of tiny tokens is ~0.
  const Matrix<Scalar> huge = random_tokens<Scalar>(5, 6, 802, 1e4);
  const Matrix<Scalar> tiny = random_tokens<Scalar>(5, 6, 803, 1e-8);
  for (const Matrix<Scalar>* Z : {&huge, &tiny}) {
    CHECK(std::isfinite(energy.value_and_gradient(*Z, G)));
    CHECK(G.allFinite());
    mssa_step(energy, *Z, {Scalar(0.5)}, out);
    CHECK(out.allFinite());
  }
  CHECK(energy.value(tiny) == Approx(0).margin(1e-10));

  // A zero dictionary: the smooth part is constant, every eta is safe.
  const SparseCodingEnergy<Scalar> flat(Matrix<Scalar>::Zero(6, 6), Scalar(0.1), huge);
  CHECK(flat.lipschitz() == Scalar(0));
  CHECK(ista_bound(flat, huge.cwiseAbs(), {Scalar(5)}).max_step_size ==
        DescentBound<Scalar>::unbounded());
  ista_step(flat, huge.cwiseAbs(), {Scalar(1)}, out);
  CHECK(out.allFinite());
}

TEST_CASE("CRATE steps may write over their input", "[crate][alias]")
{
  const CodingRateEnergy<double> energy(random_bases<double>(4, 2, 2, 900, true), 0.5);
  const Matrix<double> Z = random_tokens<double>(5, 4, 901);
  Matrix<double> separate(5, 4), in_place = Z;
  mssa_step(energy, Z, {0.5}, separate);
  mssa_step(energy, in_place, {0.5}, in_place);
  CHECK(separate == in_place);

  in_place = Z;
  coding_rate_gradient_step(energy, Z, {0.1}, separate);
  coding_rate_gradient_step(energy, in_place, {0.1}, in_place);
  CHECK(separate == in_place);

  const Matrix<double> D = random_tokens<double>(4, 4, 902, 0.5);
  in_place = Z;
  crate_ista_step<double>(D, 0.1, Z, {0.1}, separate);
  crate_ista_step<double>(D, 0.1, in_place, {0.1}, in_place);
  CHECK(separate == in_place);

  const SparseCodingEnergy<double> code(D, 0.1, Z);
  in_place = Z.cwiseAbs();
  ista_step(code, Z.cwiseAbs(), {0.1}, separate);
  ista_step(code, in_place, {0.1}, in_place);
  CHECK(separate == in_place);
}

TEST_CASE("CRATE energies and steps reject bad input with the argument and the shapes",
          "[crate][validation]")
{
  const auto U = random_bases<double>(4, 2, 2, 1000, true);
  const CodingRateEnergy<double> energy(U, 0.5);
  const Matrix<double> narrow = random_tokens<double>(3, 3, 1001);
  CHECK(invalid_argument_message([&] { energy.value(narrow); }) ==
        "CodingRateEnergy::value: Y has 3 columns, expected d = 4");
  Matrix<double> G(3, 3);
  const Matrix<double> Z = random_tokens<double>(3, 4, 1002);
  CHECK(invalid_argument_message([&] { energy.gradient(Z, G); }) ==
        "CodingRateEnergy::value_and_gradient: G is 3 x 3, expected 3 x 4");
  CHECK(invalid_argument_message([&] { CodingRateEnergy<double>({}, 0.5); }) ==
        "CodingRateEnergy: bases is empty, expected at least one subspace");
  CHECK(invalid_argument_message([&] { CodingRateEnergy<double>(U, 0.0); }) ==
        "CodingRateEnergy: eps = 0, expected a finite value > 0");
  CHECK_THAT(invalid_argument_message([&] {
               CodingRateEnergy<double>({2.0 * U[0]}, 0.5);
             }),
             Catch::Contains("CodingRateEnergy: bases[0] (4 x 2) does not have orthonormal "
                             "columns"));
  CHECK(invalid_argument_message([&] {
          CodingRateEnergy<double>({U[0], Matrix<double>::Identity(3, 1)}, 0.5);
        }) == "CodingRateEnergy: bases[1] has 3 rows, expected d = 4");

  Matrix<double> out(3, 4);
  CHECK(invalid_argument_message([&] { mssa_step(energy, Z, {0.0}, out); }) ==
        "mssa_step: step_size = 0, expected a finite value > 0");
  CHECK(invalid_argument_message([&] { mssa_step(energy, narrow, {0.5}, out); }) ==
        "mssa_step: Y has 3 columns, expected d = 4");
  CHECK(invalid_argument_message([&] { MSSAStep<double>(energy, {-1.0}); }) ==
        "MSSAStep: step_size = -1, expected a finite value > 0");

  const Matrix<double> D = random_tokens<double>(4, 4, 1003);
  CHECK(invalid_argument_message([&] { SparseCodingEnergy<double>(D, -0.1, Z); }) ==
        "SparseCodingEnergy: lambda = -0.1, expected a finite value >= 0");
  CHECK(invalid_argument_message([&] { SparseCodingEnergy<double>(D, 0.1, narrow); }) ==
        "SparseCodingEnergy: Z has 3 columns, expected the dictionary's width = 4");
  const SparseCodingEnergy<double> code(D, 0.1, Z);
  const Matrix<double> short_code = random_tokens<double>(2, 4, 1004);
  CHECK(invalid_argument_message([&] { code.value(short_code); }) ==
        "SparseCodingEnergy::value: Y has 2 rows, expected n = 3");
  CHECK(invalid_argument_message([&] { ista_step(code, Z, {-0.1}, out); }) ==
        "ista_step: step_size = -0.1, expected a finite value > 0");
  CHECK(invalid_argument_message([&] {
          crate_ista_step<double>(Matrix<double>::Identity(4, 3), 0.1, Z, {0.1}, out);
        }) == "crate_ista_step: D is 4 x 3, expected a square matrix");
  CHECK(invalid_argument_message([&] { crate_ista_step<double>(D, -1.0, Z, {0.1}, out); }) ==
        "crate_ista_step: lambda = -1, expected a finite value >= 0");
  CrateLayer<double> layer{energy, Matrix<double>::Identity(3, 3), 0.1, {0.5}, {0.1}};
  CHECK(invalid_argument_message([&] { crate_layer_step(layer, Z, out); }) ==
        "crate_layer_step: dictionary has 3 rows, expected d = 4");
  CHECK(invalid_argument_message([&] { crate_forward<double>({}, Z); }) ==
        "crate_forward: layers is empty, expected at least one layer");
}

TEST_CASE("CRATE types model Energy and UnfoldingStep", "[crate]")
{
  STATIC_REQUIRE(Energy<CodingRateEnergy<double>>);
  STATIC_REQUIRE(Energy<SparseCodingEnergy<float>>);
  STATIC_REQUIRE(UnfoldingStep<MSSAStep<double>>);
  STATIC_REQUIRE(UnfoldingStep<CodingRateGradientStep<float>>);
  STATIC_REQUIRE(UnfoldingStep<IstaStep<double>>);
}
