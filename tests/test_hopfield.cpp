// The modern Hopfield energy and its CCCP step: the pinned constants, the known fixed point,
// gradients, descent in float and double, edge cases, bad input; and a classical Hopfield net
// whose synchronous update cycles, to show that a trace measures rather than assumes descent.

#include "helpers.hpp"

#include <unfold/energy/hopfield.hpp>
#include <unfold/step/hopfield.hpp>

#include <cmath>
#include <limits>
#include <vector>

using namespace unfold;
using unfold::test::did_not_rise;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;

namespace {

// Straight from the definition, one row at a time, with a plain log of a plain sum.
double hopfield_directly(const Matrix<double>& X, double beta, const Matrix<double>& Y)
{
  const double M = X.rowwise().norm().maxCoeff();
  double total = 0;
  for (Eigen::Index i = 0; i < Y.rows(); ++i) {
    double sum = 0;
    for (Eigen::Index mu = 0; mu < X.rows(); ++mu)
      sum += std::exp(beta * X.row(mu).dot(Y.row(i)));
    total += -std::log(sum) / beta + 0.5 * Y.row(i).squaredNorm() +
             std::log(double(X.rows())) / beta + 0.5 * M * M;
  }
  return total;
}

template <class Scalar = double>
Matrix<Scalar> unit_patterns()
{
  return Matrix<Scalar>::Identity(2, 2);
}

// A classical Hopfield net on states s in {-1, 1}^d, one state per token row:
// E(s) = -0.5 s W s^T, gradient -s W (W symmetric with zero diagonal).
struct ClassicalHopfieldEnergy {
  using Scalar = double;
  Matrix<double> W;

  static constexpr std::string_view name() { return "classical_hopfield"; }
  Eigen::Index dim() const { return W.rows(); }
  double value(const ConstMatrixRef<double>& Y) const
  {
    return -0.5 * (Y * W).cwiseProduct(Y).sum();
  }
  void gradient(const ConstMatrixRef<double>& Y, MatrixRef<double> G) const { G = -Y * W; }
  double value_and_gradient(const ConstMatrixRef<double>& Y, MatrixRef<double> G) const
  {
    gradient(Y, G);
    return value(Y);
  }
};

double sign_of(double t) { return t >= 0 ? 1.0 : -1.0; }

// The net's update: all units at once, s <- sign(s W), or one unit after the other.
// The theory proves nothing for the synchronous update, so its bound says 0.
struct SignUpdateStep {
  using Scalar = double;
  ClassicalHopfieldEnergy e;
  bool asynchronous = false;

  std::string_view name() const { return asynchronous ? "sign_async" : "sign_sync"; }
  const ClassicalHopfieldEnergy& energy() const { return e; }
  void apply(const ConstMatrixRef<double>& Y, MatrixRef<double> out) const
  {
    Matrix<double> s = Y;
    if (asynchronous) {
      for (Eigen::Index i = 0; i < s.rows(); ++i)
        for (Eigen::Index j = 0; j < s.cols(); ++j)
          s(i, j) = sign_of(s.row(i).dot(e.W.col(j)));
    } else {
      s = (Y * e.W).unaryExpr([](double t) { return sign_of(t); });
    }
    out = s;
  }
  DescentBound<double> bound(const ConstMatrixRef<double>&) const
  {
    return {1.0, asynchronous ? DescentBound<double>::unbounded() : 0.0,
            asynchronous ? "asynchronous sign update" : "synchronous sign update: no guarantee"};
  }
};

}  // namespace

TEMPLATE_TEST_CASE("Hopfield energy keeps the constants log N / beta and M^2 / 2: 0.255008311 "
                   "at (0.6, 0.4) with patterns e1, e2",
                   "[hopfield][regression]", float, double)
{
  using Scalar = TestType;
  const Scalar eps = std::numeric_limits<Scalar>::epsilon();
  const HopfieldEnergy<Scalar> energy(unit_patterns<Scalar>(), Scalar(1));
  Matrix<Scalar> xi(1, 2);
  xi << Scalar(0.6), Scalar(0.4);
  INFO("E = " << energy.value(xi));
  CHECK(energy.value(xi) == Approx(0.2550083111783533).epsilon(Tolerance<Scalar>::exact / 10));
  const double direct = hopfield_directly(unit_patterns(), 1.0, xi.template cast<double>());
  CHECK(energy.value(xi) == Approx(direct).epsilon(64 * eps));
  CHECK(energy.max_norm() == Scalar(1));
  CHECK(energy.constant() == Approx(std::log(2.0) + 0.5).epsilon(8 * eps));
}

TEMPLATE_TEST_CASE("Hopfield CCCP steps from (0.6, 0.4) fall monotonically to 0.25 at "
                   "(0.5, 0.5), where the gradient is zero",
                   "[hopfield][regression][descent]", float, double)
{
  using Scalar = TestType;
  const Scalar eps = std::numeric_limits<Scalar>::epsilon();
  const HopfieldEnergy<Scalar> energy(unit_patterns<Scalar>(), Scalar(1));
  Matrix<Scalar> xi(1, 2);
  xi << Scalar(0.6), Scalar(0.4);

  std::vector<Scalar> energies{energy.value(xi)};
  for (int t = 0; t < 60; ++t) {
    hopfield_step(energy, xi, {Scalar(1)}, xi);
    energies.push_back(energy.value(xi));
  }
  for (std::size_t t = 1; t < energies.size(); ++t) {
    INFO("step " << t << ": " << energies[t - 1] << " -> " << energies[t]);
    CHECK(energies[t] <= energies[t - 1]);
  }
  CHECK(energies[1] < energies[0]);
  CHECK(energies.back() == Approx(0.25).epsilon(64 * eps));
  CHECK(std::abs(xi(0, 0) - Scalar(0.5)) <= 64 * eps);
  CHECK(std::abs(xi(0, 1) - Scalar(0.5)) <= 64 * eps);

  // The fixed point is a stationary point of E: the gradient is zero there.
  Matrix<Scalar> half = Matrix<Scalar>::Constant(1, 2, Scalar(0.5));
  Matrix<Scalar> G(1, 2);
  CHECK(energy.value_and_gradient(half, G) == Approx(0.25).epsilon(8 * eps));
  CHECK(G.cwiseAbs().maxCoeff() <= eps);

  // The unfolding operator records the same fall, inside the step's proven bound.
  Matrix<Scalar> start(1, 2);
  start << Scalar(0.6), Scalar(0.4);
  RunOptions<Scalar> options;
  options.check_bounds = true;
  const auto result = run(tied(Layer(HopfieldStep<Scalar>(energy)), 60), start, options);
  CHECK(result.completed);
  CHECK(result.trace.monotonicity().monotone);
  CHECK(result.trace.entries.front().total ==
        Approx(0.2550083111783533).epsilon(Tolerance<Scalar>::exact / 10));
  CHECK(result.trace.entries.back().total == Approx(0.25).epsilon(64 * eps));
  for (std::size_t i = 1; i < result.trace.entries.size(); ++i) {
    const auto& entry = result.trace.entries[i];
    CHECK(entry.status == StepStatus::ok);
    CHECK(*entry.bound_holds);
    CHECK(entry.total == energies[i]);
  }
}

TEMPLATE_TEST_CASE("Hopfield energy equals its definition and is never negative",
                   "[hopfield][energy]", float, double)
{
  using Scalar = TestType;
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    const Eigen::Index n = 1 + Eigen::Index(seed % 4), d = 1 + Eigen::Index(seed % 5);
    const Eigen::Index N = 1 + Eigen::Index(seed % 6);
    const Scalar beta = Scalar(seed % 3 == 0 ? 0.2 : (seed % 3 == 1 ? 1.0 : 4.0));
    INFO("seed " << seed << " n " << n << " d " << d << " N " << N << " beta " << beta);
    const Matrix<Scalar> X = random_tokens<Scalar>(N, d, seed, 0.7);
    const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, seed + 100, 1.5);
    const HopfieldEnergy<Scalar> energy(X, beta);
    // The definition evaluated in double on the same inputs.
    const double direct = hopfield_directly(X.template cast<double>(), double(beta),
                                            Y.template cast<double>());
    CHECK(energy.value(Y) == Approx(direct).epsilon(Tolerance<Scalar>::exact));
    CHECK(energy.value(Y) >= Scalar(0));
  }
}

TEMPLATE_TEST_CASE("Hopfield energy gradient matches central differences", "[hopfield][gradient]",
                   float, double)
{
  using Scalar = TestType;
  struct Shape {
    Eigen::Index n, d, N;
  };
  const Shape shapes[] = {{1, 1, 1}, {1, 3, 4}, {4, 1, 3}, {5, 4, 6}, {2, 2, 1}, {6, 8, 3}};
  for (const Shape& s : shapes)
    for (const Scalar beta : {Scalar(0.1), Scalar(1), Scalar(5)}) {
      const std::uint64_t seed = 31 + std::uint64_t(s.n * 100 + s.d * 10 + s.N);
      INFO("seed " << seed << " n " << s.n << " d " << s.d << " N " << s.N << " beta "
                   << beta);
      Matrix<Scalar> Y = random_tokens<Scalar>(s.n, s.d, seed, 0.8);
      if (s.n >= 3)
        Y.row(2) = Y.row(0);  // duplicate states
      const HopfieldEnergy<Scalar> energy(random_tokens<Scalar>(s.N, s.d, seed + 1), beta);
      const auto result = check::gradient_check(energy, Y);
      INFO("relative error " << result.relative_error);
      CHECK(result.relative_error <= Tolerance<Scalar>::gradient);

      Matrix<Scalar> G1(s.n, s.d), G2(s.n, s.d);
      CHECK(energy.value_and_gradient(Y, G1) == energy.value(Y));
      energy.gradient(Y, G2);
      CHECK(G1 == G2);
    }
}

TEMPLATE_TEST_CASE("Hopfield step never raises the energy for alpha in (0, 2]",
                   "[hopfield][descent]", float, double)
{
  using Scalar = TestType;
  int steps = 0;
  for (std::uint64_t seed = 200; seed < 230; ++seed)
    for (double scale : {0.1, 1.0, 4.0}) {
      const Eigen::Index n = 1 + Eigen::Index(seed % 7), d = 1 + Eigen::Index(seed % 6);
      const Eigen::Index N = 1 + Eigen::Index((seed / 2) % 9);
      const Scalar beta = Scalar(seed % 2 == 0 ? 0.5 : 3.0);
      INFO("seed " << seed << " scale " << scale << " n " << n << " d " << d << " N " << N);
      const HopfieldEnergy<Scalar> energy(random_tokens<Scalar>(N, d, seed), beta);
      const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, seed + 1000, scale);
      Matrix<Scalar> out(n, d);
      for (Scalar alpha : {Scalar(0.3), Scalar(1), Scalar(1.7), Scalar(2)}) {
        hopfield_step(energy, Y, {alpha}, out);
        const Scalar before = energy.value(Y), after = energy.value(out);
        CHECK(did_not_rise(before, after));

        // E(Y+) <= E(Y) - alpha (1 - alpha / 2) ||Y+ - Y_cccp||^2 with Y_cccp the retrieval.
        const Scalar gap = (energy.retrieve(Y) - Y).squaredNorm();
        CHECK(did_not_rise(before - alpha * (1 - alpha / 2) * gap, after));
        CHECK(hopfield_bound<Scalar>({alpha}).holds());
        ++steps;
      }
    }
  CHECK(steps == 360);
  CHECK_FALSE(hopfield_bound<Scalar>({Scalar(2.01)}).holds());
}

TEMPLATE_TEST_CASE("Hopfield step handles one state, one feature, one pattern, duplicates and "
                   "extreme norms",
                   "[hopfield][edge]", float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;

  // One pattern: the CCCP update retrieves it in one step, from anywhere.
  const Matrix<Scalar> one = random_tokens<Scalar>(1, 3, 1);
  const HopfieldEnergy<Scalar> single(one, Scalar(2));
  const Matrix<Scalar> far = random_tokens<Scalar>(4, 3, 2, 30.0);
  Matrix<Scalar> out(4, 3);
  hopfield_step(single, far, {1}, out);
  for (Eigen::Index i = 0; i < 4; ++i)
    CHECK((out.row(i) - one.row(0)).cwiseAbs().maxCoeff() <= tol);
  CHECK(single.value(out) == Approx(0).margin(100 * tol));

  // One feature, one state: patterns -1, 0.5, 2 on a line.
  Matrix<Scalar> line(3, 1);
  line << -1, 0.5, 2;
  const HopfieldEnergy<Scalar> on_line(line, Scalar(1));
  Matrix<Scalar> x(1, 1), x_out(1, 1);
  x << 0.1;
  hopfield_step(on_line, x, {1}, x_out);
  const Scalar w0 = std::exp(Scalar(-0.1)), w1 = std::exp(Scalar(0.05)),
               w2 = std::exp(Scalar(0.2));
  CHECK(x_out(0, 0) == Approx((-w0 + 0.5 * w1 + 2 * w2) / (w0 + w1 + w2)).epsilon(10 * tol));

  // Duplicate states stay duplicates.
  const HopfieldEnergy<Scalar> energy(random_tokens<Scalar>(5, 3, 3), Scalar(1));
  Matrix<Scalar> dup = random_tokens<Scalar>(4, 3, 4);
  dup.row(3) = dup.row(1);
  hopfield_step(energy, dup, {Scalar(0.7)}, out);
  CHECK((out.row(3) - out.row(1)).cwiseAbs().maxCoeff() == Scalar(0));

  // Huge states: the softmax saturates on the best pattern, without NaN or overflow.
  const Matrix<Scalar> huge = random_tokens<Scalar>(4, 3, 5, 1e4);
  Matrix<Scalar> G(4, 3);
  CHECK(std::isfinite(energy.value_and_gradient(huge, G)));
  CHECK(G.allFinite());
  hopfield_step(energy, huge, {1}, out);
  REQUIRE(out.allFinite());
  const Matrix<Scalar> logits = huge * energy.patterns().transpose();
  for (Eigen::Index i = 0; i < 4; ++i) {
    Eigen::Index best = 0;
    logits.row(i).maxCoeff(&best);
    CHECK((out.row(i) - energy.patterns().row(best)).cwiseAbs().maxCoeff() <= tol);
  }

  // Tiny states: every pattern weighs the same, the update is their mean.
  const Matrix<Scalar> tiny = random_tokens<Scalar>(4, 3, 6, 1e-14);
  hopfield_step(energy, tiny, {1}, out);
  const RowVector<Scalar> mean = energy.patterns().colwise().mean();
  CHECK((out.rowwise() - mean).cwiseAbs().maxCoeff() <= tol);
}

TEMPLATE_TEST_CASE("Hopfield energy keeps its digits at a small inverse temperature",
                   "[hopfield][edge]", float, double)
{
  using Scalar = TestType;
  // For beta -> 0, -(1/beta) log((1/N) sum exp(beta s_mu)) -> -mean(s) - (beta/2) var(s); a
  // plain log of a sum minus log N would lose about eps / beta of it, all of it in float.
  const Matrix<Scalar> X = random_tokens<Scalar>(6, 4, 7);
  const Matrix<Scalar> Y = random_tokens<Scalar>(1, 4, 8);
  const Scalar beta = Scalar(1e-7);
  const HopfieldEnergy<Scalar> energy(X, beta);
  const Vector<double> s = X.template cast<double>() * Y.row(0).transpose().template cast<double>();
  const double mean = s.mean();
  const double var = (s.array() - mean).square().mean();
  const double M = X.template cast<double>().rowwise().norm().maxCoeff();
  const double expected = -mean - 0.5 * double(beta) * var +
                          0.5 * Y.template cast<double>().squaredNorm() + 0.5 * M * M;
  CHECK(energy.value(Y) == Approx(expected).epsilon(Tolerance<Scalar>::exact));
}

TEST_CASE("Hopfield step may write over its input", "[hopfield][alias]")
{
  const HopfieldEnergy<double> energy(random_tokens<double>(5, 4, 9), 2.0);
  const Matrix<double> Y = random_tokens<double>(6, 4, 10);
  for (double alpha : {1.0, 0.6}) {
    Matrix<double> separate(6, 4), in_place = Y;
    hopfield_step(energy, Y, {alpha}, separate);
    hopfield_step(energy, in_place, {alpha}, in_place);
    CHECK(separate == in_place);
  }
}

TEST_CASE("Hopfield energy and step reject bad input with the argument and the shapes",
          "[hopfield][validation]")
{
  const Matrix<double> X = random_tokens<double>(3, 4, 11);
  const HopfieldEnergy<double> energy(X, 1.0);
  const Matrix<double> narrow = random_tokens<double>(2, 3, 12);
  CHECK(invalid_argument_message([&] { energy.value(narrow); }) ==
        "HopfieldEnergy::value: Y has 3 columns, expected d = 4");
  const Matrix<double> Y = random_tokens<double>(2, 4, 13);
  Matrix<double> G(2, 3);
  CHECK(invalid_argument_message([&] { energy.gradient(Y, G); }) ==
        "HopfieldEnergy::value_and_gradient: G is 2 x 3, expected 2 x 4");
  CHECK(invalid_argument_message([&] { HopfieldEnergy<double>(X, 0.0); }) ==
        "HopfieldEnergy: beta = 0, expected a finite value > 0");
  CHECK(invalid_argument_message([&] { HopfieldEnergy<double>(Matrix<double>(0, 4), 1.0); }) ==
        "HopfieldEnergy: X is 0 x 4, expected at least 1 x 1");
  Matrix<double> X_nan = X;
  X_nan(1, 2) = std::nan("");
  CHECK_THAT(invalid_argument_message([&] { HopfieldEnergy<double>(X_nan, 1.0); }),
             Catch::Contains("HopfieldEnergy: X (3 x 4) has a non-finite entry"));

  Matrix<double> out(2, 4), short_out(1, 4);
  CHECK(invalid_argument_message([&] { hopfield_step(energy, Y, {-1.0}, out); }) ==
        "hopfield_step: step_size = -1, expected a finite value > 0");
  CHECK(invalid_argument_message([&] { hopfield_step(energy, Y, {1.0}, short_out); }) ==
        "hopfield_step: Yout is 1 x 4, expected 2 x 4");
  CHECK(invalid_argument_message([&] { hopfield_step(energy, narrow, {1.0}, out); }) ==
        "hopfield_step: Y has 3 columns, expected d = 4");
  CHECK(invalid_argument_message([&] { HopfieldStep<double>(energy, {0.0}); }) ==
        "HopfieldStep: step_size = 0, expected a finite value > 0");
}

TEST_CASE("Hopfield step models UnfoldingStep and its energy models Energy", "[hopfield]")
{
  STATIC_REQUIRE(Energy<HopfieldEnergy<float>>);
  STATIC_REQUIRE(Energy<HopfieldEnergy<double>>);
  STATIC_REQUIRE(UnfoldingStep<HopfieldStep<float>>);
  STATIC_REQUIRE(UnfoldingStep<HopfieldStep<double>>);
}

TEST_CASE("a synchronous two-unit Hopfield net with weight -1 cycles at constant energy and the "
          "trace claims no descent it did not see",
          "[hopfield][classical][trace]")
{
  Matrix<double> W(2, 2);
  W << 0, -1, -1, 0;
  const ClassicalHopfieldEnergy energy{W};
  Matrix<double> start(1, 2);
  start << -1, -1;
  REQUIRE(energy.value(start) == 1.0);

  std::vector<Matrix<double>> states;
  RunOptions<double> options;
  options.check_bounds = true;
  options.observer = [&](const StepEvent<double>& event) { states.push_back(event.tokens); };
  const auto result = run(tied(Layer(SignUpdateStep{energy, false}), 6), start, options);

  // Every entry is measured at the same energy 1: nothing rose, and nothing fell either.
  REQUIRE(result.completed);
  REQUIRE(result.trace.entries.size() == 7);
  for (const auto& entry : result.trace.entries) {
    CHECK(entry.status == StepStatus::ok);
    CHECK(entry.total == 1.0);
  }
  const auto report = result.trace.monotonicity();
  CHECK(report.monotone);
  CHECK(report.increases == 0);
  CHECK(report.largest_increase == 0.0);
  const auto totals = result.trace.layer_totals();
  CHECK(*std::min_element(totals.begin(), totals.end()) == totals.front());

  // The state flips between (1, 1) and (-1, -1) and never settles; the step claimed no bound.
  REQUIRE(states.size() == 6);
  for (std::size_t t = 0; t < states.size(); ++t) {
    const double expected = t % 2 == 0 ? 1.0 : -1.0;
    CHECK(states[t] == Matrix<double>::Constant(1, 2, expected));
  }
  CHECK(result.tokens == start);
  for (std::size_t i = 1; i < result.trace.entries.size(); ++i)
    CHECK_FALSE(*result.trace.entries[i].bound_holds);

  // The same net updated one unit at a time does fall, to -1, and the trace sees it.
  const auto async = run(tied(Layer(SignUpdateStep{energy, true}), 3), start);
  REQUIRE(async.trace.entries.size() == 4);
  CHECK(async.trace.entries[0].total == 1.0);
  CHECK(async.trace.entries[1].total == -1.0);
  CHECK(async.trace.entries.back().total == -1.0);
  CHECK(async.trace.monotonicity().monotone);
}
