// The Energy Transformer: the layer norm as the gradient of its Lagrangian, the energy against
// a direct formula, dE/dx and dE/dg against central differences, descent of the step in float
// and double, the degenerate and extreme cases, and bad input.

#include "helpers.hpp"

#include <unfold/energy/energy_transformer.hpp>
#include <unfold/reference/layer_norm.hpp>
#include <unfold/step/energy_transformer.hpp>

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace unfold;
using unfold::test::did_not_rise;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;

namespace {

struct Problem {
  Eigen::Index n, d, heads, k, memories;
};

// Weights N(0, 1/d), beta = 1/sqrt(k), gain 1.3, a small random bias.
template <class Scalar>
EnergyTransformerEnergy<Scalar> random_energy(const Problem& p, std::uint64_t seed,
                                              EnergyTransformerOptions options = {})
{
  std::mt19937_64 rng(seed);
  const Scalar spread = Scalar(1 / std::sqrt(double(p.d)));
  std::vector<Matrix<Scalar>> keys, queries;
  for (Eigen::Index h = 0; h < p.heads; ++h) {
    keys.push_back(normal_matrix<Scalar>(p.d, p.k, spread, rng));
    queries.push_back(normal_matrix<Scalar>(p.d, p.k, spread, rng));
  }
  const Matrix<Scalar> xi = normal_matrix<Scalar>(p.memories, p.d, spread, rng);
  const RowVector<Scalar> delta = normal_matrix<Scalar>(1, p.d, Scalar(0.1), rng);
  const LayerNormLagrangian<Scalar> norm(p.d, Scalar(1.3), delta, Scalar(1e-5));
  return EnergyTransformerEnergy<Scalar>(norm, keys, queries, xi,
                                         Scalar(1 / std::sqrt(double(p.k))), options);
}

// E as a function of the normalised tokens g, with plain loops and plain logs of plain sums,
// in double whatever the energy's scalar.
template <class Scalar>
double energy_of_g(const EnergyTransformerEnergy<Scalar>& e, const Matrix<double>& g)
{
  const Eigen::Index n = g.rows();
  const double beta = double(e.beta());
  const bool self = e.options().include_self;
  const Matrix<double> memories = e.memories().template cast<double>();
  double total = 0;
  if (e.options().terms != EnergyTransformerTerms::memory)
    for (std::size_t h = 0; h < e.heads(); ++h) {
      const Matrix<double> K = g * e.keys()[h].template cast<double>();
      const Matrix<double> Q = g * e.queries()[h].template cast<double>();
      for (Eigen::Index C = 0; C < n; ++C) {
        double sum = 0;
        for (Eigen::Index B = 0; B < n; ++B)
          if (self || B != C)
            sum += std::exp(beta * K.row(B).dot(Q.row(C)));
        if (sum > 0)
          total -= std::log(sum) / beta;
      }
    }
  if (e.options().terms != EnergyTransformerTerms::attention)
    for (Eigen::Index mu = 0; mu < memories.rows(); ++mu)
      for (Eigen::Index B = 0; B < n; ++B) {
        const double h = std::max(0.0, memories.row(mu).dot(g.row(B)));
        total -= 0.5 * h * h;
      }
  return total;
}

// Central differences of energy_of_g at g, relative error against G as in check::gradient_check;
// the differences are taken in double, so in float only G's own rounding shows.
template <class Scalar>
double activation_gradient_error(const EnergyTransformerEnergy<Scalar>& e,
                                 const Matrix<Scalar>& g_in, const Matrix<Scalar>& G_in)
{
  const double h = 1e-6;
  const Matrix<double> g = g_in.template cast<double>();
  const Matrix<double> G = G_in.template cast<double>();
  Matrix<double> fd(g.rows(), g.cols()), moved = g;
  for (Eigen::Index j = 0; j < g.cols(); ++j)
    for (Eigen::Index i = 0; i < g.rows(); ++i) {
      moved(i, j) = g(i, j) + h;
      const double up = energy_of_g(e, moved);
      moved(i, j) = g(i, j) - h;
      const double down = energy_of_g(e, moved);
      moved(i, j) = g(i, j);
      fd(i, j) = (up - down) / (2 * h);
    }
  const double scale = std::max({G.cwiseAbs().maxCoeff(), fd.cwiseAbs().maxCoeff(), 1e-300});
  return (G - fd).cwiseAbs().maxCoeff() / scale;
}

const Problem problems[] = {{1, 3, 1, 2, 2}, {2, 4, 2, 3, 3}, {2, 2, 1, 1, 0}, {5, 4, 3, 2, 4},
                            {7, 6, 2, 4, 5}, {4, 8, 0, 1, 6}, {6, 3, 2, 3, 0}, {1, 5, 2, 2, 0}};

}  // namespace

TEMPLATE_TEST_CASE("layer norm is the gradient of its convex Lagrangian",
                   "[et][layer_norm][gradient]", float, double)
{
  using Scalar = TestType;
  const Scalar eps = std::numeric_limits<Scalar>::epsilon();
  for (Eigen::Index d : {2, 3, 8}) {
    const std::uint64_t seed = 40 + std::uint64_t(d);
    INFO("seed " << seed << " d " << d);
    const RowVector<Scalar> delta = random_tokens<Scalar>(1, d, seed);
    const LayerNormLagrangian<Scalar> norm(d, Scalar(0.7), delta, Scalar(1e-3));
    const Matrix<Scalar> Y = random_tokens<Scalar>(5, d, seed + 1, 1.5);
    const auto result = check::gradient_check(norm, Y);
    INFO("relative error " << result.relative_error);
    CHECK(result.relative_error <= Tolerance<Scalar>::gradient);

    // The gradient is the usual layer norm (PyTorch's conventions) with a constant gain.
    const reference::LayerNorm<Scalar> ln{RowVector<Scalar>::Constant(d, Scalar(0.7)), delta,
                                          Scalar(1e-3)};
    const Matrix<Scalar> expected = reference::layer_norm<Scalar>(Y, ln);
    CHECK((norm.normalise(Y) - expected).cwiseAbs().maxCoeff() <= 512 * eps);

    // Its Hessian, the layer-norm Jacobian, is symmetric PSD with the predicted spectrum.
    const Matrix<Scalar> x = Y.row(0);
    Matrix<Scalar> J(d, d);
    for (Eigen::Index j = 0; j < d; ++j) {
      Matrix<Scalar> column(1, d);
      norm.apply_jacobian(x, Matrix<Scalar>::Identity(d, d).row(j), column);
      J.col(j) = column.transpose();
    }
    CHECK((J - J.transpose()).cwiseAbs().maxCoeff() <= 64 * eps);
    const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eigen(J);
    const double c2 = (x.array() - x.mean()).matrix().squaredNorm();
    const double rho = std::sqrt(c2 + double(d) * 1e-3);
    const double top = 0.7 * std::sqrt(double(d)) / rho;
    // Eigenvalues carry an absolute error of a few eps times the largest one.
    const double spread = 64 * double(eps) * top;
    CHECK(eigen.eigenvalues()(0) == Approx(0).margin(std::max(1e-12, spread)));
    CHECK(eigen.eigenvalues()(1) ==
          Approx(top * double(d) * 1e-3 / (rho * rho)).epsilon(1e-9).margin(spread));
    if (d >= 3)  // for d = 2 the centred direction is all there is beside the ones
      CHECK(eigen.eigenvalues()(d - 1) == Approx(top).epsilon(Tolerance<Scalar>::exact));
  }
}

TEMPLATE_TEST_CASE("Energy Transformer energy equals its definition as a function of g",
                   "[et][energy]", float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;
  for (const Problem& p : problems)
    for (bool self : {false, true}) {
      const std::uint64_t seed = 100 + std::uint64_t(p.n * 10 + p.d);
      INFO("seed " << seed << " n " << p.n << " d " << p.d << " self " << self);
      const auto e = random_energy<Scalar>(p, seed, {self, EnergyTransformerTerms::both});
      const Matrix<Scalar> Y = random_tokens<Scalar>(p.n, p.d, seed + 1);
      const Matrix<Scalar> g = e.layer_norm().normalise(Y);
      CHECK(e.value(Y) ==
            Approx(energy_of_g(e, g.template cast<double>())).epsilon(tol).margin(tol / 10));
      CHECK(e.value(Y) == Approx(e.attention_value(Y) + e.memory_value(Y)).epsilon(tol / 10));
      const auto memory = e.with_terms(EnergyTransformerTerms::memory);
      CHECK(memory.value(Y) == e.memory_value(Y));
      CHECK(memory.value(Y) <= Scalar(0));
    }
}

TEMPLATE_TEST_CASE("Energy Transformer dE/dx and dE/dg match central differences",
                   "[et][gradient]", float, double)
{
  using Scalar = TestType;
  using Terms = EnergyTransformerTerms;
  for (const Problem& p : problems)
    for (bool self : {false, true})
      for (Terms terms : {Terms::both, Terms::attention, Terms::memory}) {
        const std::uint64_t seed = 200 + std::uint64_t(p.n * 10 + p.d);
        INFO("seed " << seed << " n " << p.n << " d " << p.d << " heads " << p.heads << " M "
                     << p.memories << " self " << self << " terms " << int(terms));
        const auto e = random_energy<Scalar>(p, seed, {self, terms});
        Matrix<Scalar> Y = random_tokens<Scalar>(p.n, p.d, seed + 1);
        if (p.n >= 3)
          Y.row(2) = Y.row(0);  // duplicate tokens
        const auto result = check::gradient_check(e, Y);
        INFO("dE/dx relative error " << result.relative_error);
        CHECK(result.relative_error <= Tolerance<Scalar>::gradient);

        Matrix<Scalar> G(p.n, p.d);
        e.value_and_activation_gradient(Y, G);
        const double error = activation_gradient_error<Scalar>(e, e.layer_norm().normalise(Y), G);
        INFO("dE/dg relative error " << error);
        CHECK(error <= Tolerance<Scalar>::gradient);
      }
}

TEMPLATE_TEST_CASE("Energy Transformer step moves along -dE/dg, not -dE/dx", "[et][step]", float,
                   double)
{
  using Scalar = TestType;
  const Scalar alpha = Scalar(0.05);
  const Scalar tol = 8 * std::numeric_limits<Scalar>::epsilon();
  const auto e = random_energy<Scalar>({5, 4, 2, 3, 3}, 300);
  const Matrix<Scalar> Y = random_tokens<Scalar>(5, 4, 301);
  Matrix<Scalar> dEdg(5, 4), dEdx(5, 4), out(5, 4);
  e.value_and_activation_gradient(Y, dEdg);
  e.gradient(Y, dEdx);
  energy_transformer_step(e, Y, {alpha}, out);
  CHECK((out - (Y - alpha * dEdg)).cwiseAbs().maxCoeff() <= tol);
  CHECK((dEdg - dEdx).cwiseAbs().maxCoeff() > Scalar(1e-3));

  // Alternating: the attention sub-step at Y, then the memory sub-step where it landed.
  Matrix<Scalar> part(5, 4), expected = Y;
  e.with_terms(EnergyTransformerTerms::attention).value_and_activation_gradient(expected, part);
  expected -= alpha * part;
  e.with_terms(EnergyTransformerTerms::memory).value_and_activation_gradient(expected, part);
  expected -= alpha * part;
  energy_transformer_step(e, Y, {alpha, EnergyTransformerUpdate::alternating}, out);
  CHECK((out - expected).cwiseAbs().maxCoeff() <= tol);

  // The first-order decrease is alpha (dE/dg)^T J (dE/dg) = alpha dE/dg . dE/dx >= 0.
  CHECK(dEdg.cwiseProduct(dEdx).sum() > Scalar(0));
}

TEMPLATE_TEST_CASE("Energy Transformer step never raises the energy at alpha = 1e-3",
                   "[et][descent]", float, double)
{
  // Measured on these problems (double, combined and alternating): the first alpha that raised
  // E was 0.0041 at token scale 0.01, 0.037 at 0.1, 0.36 at 1 and 3.6 at 10; the safe step
  // grows with the centred token norm. 1e-3 is at least four times below all of them.
  using Scalar = TestType;
  int steps = 0;
  for (std::uint64_t seed = 1; seed < 60; ++seed)
    for (double scale : {0.01, 0.1, 1.0, 10.0}) {
      const Problem p{1 + Eigen::Index(seed % 9), 2 + Eigen::Index(seed % 7),
                      Eigen::Index(seed % 4), 1 + Eigen::Index(seed % 5), Eigen::Index(seed % 7)};
      const bool self = seed % 2 == 1;
      INFO("seed " << seed << " scale " << scale << " n " << p.n << " d " << p.d << " heads "
                   << p.heads << " M " << p.memories << " self " << self);
      const auto e = random_energy<Scalar>(p, seed, {self, EnergyTransformerTerms::both});
      const Matrix<Scalar> Y = random_tokens<Scalar>(p.n, p.d, seed + 5, scale);
      Matrix<Scalar> out(p.n, p.d);
      using Update = EnergyTransformerUpdate;
      for (Update update : {Update::combined, Update::alternating}) {
        energy_transformer_step(e, Y, {Scalar(1e-3), update}, out);
        CHECK(did_not_rise(e.value(Y), e.value(out)));
        ++steps;
      }
    }
  CHECK(steps == 59 * 4 * 2);
}

TEMPLATE_TEST_CASE("an Energy Transformer stack records a monotone trace", "[et][stack]", float,
                   double)
{
  using Scalar = TestType;
  const auto e = random_energy<Scalar>({8, 6, 3, 4, 5}, 400);
  const Matrix<Scalar> Y = random_tokens<Scalar>(8, 6, 401);
  RunOptions<Scalar> options;
  options.check_bounds = true;
  const auto result = run(tied(Layer(EnergyTransformerStep<Scalar>(e, {Scalar(0.02)})), 40), Y,
                          options);
  REQUIRE(result.completed);
  CHECK(result.trace.component_names == std::vector<std::string>{"energy_transformer"});
  CHECK(result.trace.monotonicity().monotone);
  CHECK(result.trace.entries.back().total < result.trace.entries.front().total);
  // No bound is proven, and the trace says so rather than claiming one.
  CHECK(*result.trace.entries[1].max_step_size == Scalar(0));
  CHECK_FALSE(*result.trace.entries[1].bound_holds);
}

TEST_CASE("Energy Transformer with d = 1 is constant: the layer norm maps every token to delta",
          "[et][edge]")
{
  const auto e = random_energy<double>({4, 1, 2, 2, 3}, 500);
  const Matrix<double> Y = random_tokens<double>(4, 1, 501, 3.0);
  const Matrix<double> g = e.layer_norm().normalise(Y);
  for (Eigen::Index i = 0; i < 4; ++i)
    CHECK(g(i, 0) == e.layer_norm().bias()(0));
  Matrix<double> G(4, 1), out(4, 1);
  e.gradient(Y, G);
  CHECK(G.cwiseAbs().maxCoeff() == 0.0);
  CHECK(check::gradient_check(e, Y).absolute_error == 0.0);
  energy_transformer_step(e, Y, {0.5}, out);
  CHECK(e.value(out) == e.value(Y));
}

TEMPLATE_TEST_CASE("a single token attends to nobody unless the self term is included",
                   "[et][edge]", float, double)
{
  using Scalar = TestType;
  auto e = random_energy<Scalar>({1, 4, 2, 3, 0}, 600);
  const Matrix<Scalar> x = random_tokens<Scalar>(1, 4, 601);
  Matrix<Scalar> G(1, 4);
  CHECK(e.value_and_gradient(x, G) == Scalar(0));
  CHECK(G.cwiseAbs().maxCoeff() == Scalar(0));

  // With it, query C = 0 sees its own key only: E = -sum_h K_0 . Q_0.
  const auto with_self = EnergyTransformerEnergy<Scalar>(
      e.layer_norm(), e.keys(), e.queries(), e.memories(), e.beta(),
      {true, EnergyTransformerTerms::both});
  const Matrix<Scalar> g = e.layer_norm().normalise(x);
  Scalar expected = 0;
  for (std::size_t h = 0; h < 2; ++h)
    expected -= (g * e.keys()[h]).row(0).dot((g * e.queries()[h]).row(0));
  CHECK(with_self.value(x) == Approx(expected).epsilon(Tolerance<Scalar>::exact / 10));
}

TEMPLATE_TEST_CASE("Energy Transformer handles duplicates, huge, tiny and offset tokens",
                   "[et][edge]", float, double)
{
  using Scalar = TestType;
  const auto e = random_energy<Scalar>({6, 5, 2, 3, 4}, 700);
  Matrix<Scalar> G(6, 5), out(6, 5);

  // Duplicate tokens have equal gradients and stay duplicates.
  Matrix<Scalar> dup = random_tokens<Scalar>(6, 5, 701);
  dup.row(4) = dup.row(1);
  e.gradient(dup, G);
  CHECK((G.row(4) - G.row(1)).cwiseAbs().maxCoeff() <= Tolerance<Scalar>::exact);
  energy_transformer_step(e, dup, {Scalar(0.01)}, out);
  CHECK((out.row(4) - out.row(1)).cwiseAbs().maxCoeff() <= Tolerance<Scalar>::exact);

  // Huge tokens, huge offsets, tiny tokens: g stays on its ball, everything finite, and the
  // energy is invariant to scaling and shifting far above eps.
  const Matrix<Scalar> base = random_tokens<Scalar>(6, 5, 702);
  const Matrix<Scalar> huge = Scalar(1e6) * base;
  const Matrix<Scalar> offset = (base.array() + Scalar(1e3)).matrix();
  const Matrix<Scalar> tiny = Scalar(1e-7) * base;
  for (const Matrix<Scalar>* Y : {&huge, &offset, &tiny}) {
    CHECK(std::isfinite(e.value_and_gradient(*Y, G)));
    CHECK(G.allFinite());
    energy_transformer_step(e, *Y, {Scalar(0.01)}, out);
    CHECK(out.allFinite());
  }
  const Scalar at_base = e.value(base);
  CHECK(e.value(huge) == Approx(at_base).epsilon(1e-4));
  CHECK(e.value(offset) == Approx(at_base).epsilon(1e-3));
  const Matrix<Scalar> g = e.layer_norm().normalise(tiny);
  CHECK(((g.rowwise() - e.layer_norm().bias()).rowwise().norm().array() <
         Scalar(1.3) * std::sqrt(Scalar(5)))
            .all());
}

TEST_CASE("Energy Transformer step may write over its input", "[et][alias]")
{
  const auto e = random_energy<double>({5, 4, 2, 2, 3}, 800);
  const Matrix<double> Y = random_tokens<double>(5, 4, 801);
  for (auto update : {EnergyTransformerUpdate::combined, EnergyTransformerUpdate::alternating}) {
    Matrix<double> separate(5, 4), in_place = Y;
    energy_transformer_step(e, Y, {0.1, update}, separate);
    energy_transformer_step(e, in_place, {0.1, update}, in_place);
    CHECK(separate == in_place);
  }
  const LayerNormLagrangian<double> norm(4);
  Matrix<double> V = random_tokens<double>(5, 4, 802), separate(5, 4);
  norm.apply_jacobian(Y, V, separate);
  norm.apply_jacobian(Y, V, V);
  CHECK(separate == V);
}

TEST_CASE("Energy Transformer rejects bad input with the argument and the shapes",
          "[et][validation]")
{
  const auto e = random_energy<double>({3, 4, 2, 3, 2}, 900);
  const Matrix<double> narrow = random_tokens<double>(3, 3, 901);
  CHECK(invalid_argument_message([&] { e.value(narrow); }) ==
        "EnergyTransformerEnergy::value: Y has 3 columns, expected d = 4");
  const Matrix<double> Y = random_tokens<double>(3, 4, 902);
  Matrix<double> G(3, 3), out(3, 4);
  CHECK(invalid_argument_message([&] { e.gradient(Y, G); }) ==
        "EnergyTransformerEnergy::value_and_gradient: G is 3 x 3, expected 3 x 4");
  CHECK(invalid_argument_message([&] { e.value_and_activation_gradient(Y, G); }) ==
        "EnergyTransformerEnergy::value_and_activation_gradient: G is 3 x 3, expected 3 x 4");
  CHECK(invalid_argument_message([&] { energy_transformer_step(e, Y, {0.0}, out); }) ==
        "energy_transformer_step: step_size = 0, expected a finite value > 0");
  CHECK(invalid_argument_message([&] { energy_transformer_step(e, narrow, {0.1}, out); }) ==
        "energy_transformer_step: Y has 3 columns, expected d = 4");
  CHECK(invalid_argument_message([&] { EnergyTransformerStep<double>(e, {-1.0}); }) ==
        "EnergyTransformerStep: step_size = -1, expected a finite value > 0");

  const LayerNormLagrangian<double> norm(4);
  const std::vector<Matrix<double>> one{random_tokens<double>(4, 2, 903)};
  const std::vector<Matrix<double>> none;
  const Matrix<double> xi = random_tokens<double>(2, 4, 904);
  CHECK(invalid_argument_message([&] { EnergyTransformerEnergy<double>(norm, one, none, xi, 1); })
        == "EnergyTransformerEnergy: keys has 1 heads, queries has 0, expected the same number");
  const std::vector<Matrix<double>> wrong{random_tokens<double>(4, 3, 905)};
  CHECK(invalid_argument_message([&] { EnergyTransformerEnergy<double>(norm, one, wrong, xi, 1); })
        == "EnergyTransformerEnergy: queries[0] is 4 x 3, expected 4 x 2");
  const std::vector<Matrix<double>> tall{random_tokens<double>(5, 2, 906)};
  CHECK(invalid_argument_message([&] { EnergyTransformerEnergy<double>(norm, tall, tall, xi, 1); })
        == "EnergyTransformerEnergy: keys[0] has 5 rows, expected d = 4");
  CHECK(invalid_argument_message([&] {
          EnergyTransformerEnergy<double>(norm, one, one, random_tokens<double>(2, 3, 907), 1);
        }) == "EnergyTransformerEnergy: memories has 3 columns, expected d = 4");
  CHECK(invalid_argument_message([&] { EnergyTransformerEnergy<double>(norm, one, one, xi, 0); })
        == "EnergyTransformerEnergy: beta = 0, expected a finite value > 0");
  CHECK(invalid_argument_message([&] { LayerNormLagrangian<double>(0); }) ==
        "LayerNormLagrangian: d = 0, expected d >= 1");
  CHECK(invalid_argument_message([&] { LayerNormLagrangian<double>(4, -1.0); }) ==
        "LayerNormLagrangian: gain = -1, expected a finite value > 0");
  CHECK(invalid_argument_message([&] { LayerNormLagrangian<double>(4, 1.0, {}, 0.0); }) ==
        "LayerNormLagrangian: eps = 0, expected a finite value > 0");
  CHECK(invalid_argument_message([&] {
          LayerNormLagrangian<double>(4, 1.0, RowVector<double>::Zero(3));
        }) == "LayerNormLagrangian: bias is 1 x 3, expected 1 x 4");
}

TEST_CASE("Energy Transformer types model Energy and UnfoldingStep", "[et]")
{
  STATIC_REQUIRE(Energy<LayerNormLagrangian<float>>);
  STATIC_REQUIRE(Energy<EnergyTransformerEnergy<double>>);
  STATIC_REQUIRE(Energy<EnergyTransformerEnergy<float>>);
  STATIC_REQUIRE(UnfoldingStep<EnergyTransformerStep<double>>);
}
