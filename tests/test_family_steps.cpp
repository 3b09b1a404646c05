// Layer norm as a projection, the causal MM step, the step combinators and the sufficient
// conditions for alternating descent.

#include "helpers.hpp"

#include <unfold/check/equivalence.hpp>
#include <unfold/reference/layer_norm.hpp>

using namespace unfold;
using unfold::test::did_not_rise;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;

TEMPLATE_TEST_CASE("layer-norm projection lands on the sphere of centred tokens",
                   "[projection]", float, double)
{
  using Scalar = TestType;
  Matrix<Scalar> Y = random_tokens<Scalar>(6, 5, 1, 3.0);
  Y.row(4).setConstant(Scalar(2));  // a constant row
  Matrix<Scalar> out(6, 5);
  layer_norm_projection<Scalar>(Y, out);
  for (Eigen::Index j = 0; j < 6; ++j) {
    if (j == 4) {
      CHECK(out.row(j).cwiseAbs().maxCoeff() == Scalar(0));
      continue;
    }
    CHECK(std::abs(out.row(j).sum()) <= 10 * Tolerance<Scalar>::exact);
    CHECK(out.row(j).squaredNorm() == Approx(5.0).epsilon(Tolerance<Scalar>::exact));
  }

  // It is layer norm without eps and affine part, and a projection: applying it twice is once.
  reference::LayerNorm<Scalar> ln;
  ln.eps = Scalar(1e-30);  // layer norm needs eps > 0; this one is below rounding
  const Matrix<Scalar> Z = random_tokens<Scalar>(4, 5, 2);
  Matrix<Scalar> projected(4, 5), twice(4, 5);
  layer_norm_projection<Scalar>(Z, projected);
  CHECK((projected - reference::layer_norm<Scalar>(Z, ln)).cwiseAbs().maxCoeff() <=
        10 * Tolerance<Scalar>::exact);
  layer_norm_projection<Scalar>(projected, twice);
  CHECK((twice - projected).cwiseAbs().maxCoeff() <= 10 * Tolerance<Scalar>::exact);
}

TEMPLATE_TEST_CASE("metric projection equalises ||y_j P|| and makes softmax the MM step",
                   "[projection]", float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> P = random_tokens<Scalar>(5, 3, 3);
  const Matrix<Scalar> Y = random_tokens<Scalar>(7, 5, 4);
  Matrix<Scalar> out(7, 5);
  metric_norm_projection<Scalar>(P, Y, out);
  const Vector<Scalar> norms = (out * P).rowwise().norm();
  const Vector<Scalar> before = (Y * P).rowwise().norm();
  CHECK(norms.maxCoeff() - norms.minCoeff() <= Tolerance<Scalar>::exact * norms.maxCoeff());
  CHECK(norms(0) == Approx(std::sqrt(before.squaredNorm() / 7)).epsilon(1e-5));

  const MMAttentionStep<Scalar> step(AttentionEnergy<Scalar>(P), {1});
  CHECK(check::attention_gap(step, out).max_abs <= Tolerance<Scalar>::exact);
}

TEST_CASE("a projection step in a layer is traced and its effect on the energy measured",
          "[projection][stack]")
{
  const auto w = compat::PaperWeights<double>::xavier(6, 5);
  const AttentionEnergy<double> attention(w.W);
  const FeedForwardEnergy<double> ffn(w.feedforward_weight(), w.b);
  const Layer layer(ProjectionStep<double>(6), MMAttentionStep<double>(attention),
                    FeedForwardStep<double>(ffn, {1.0, false}));
  const auto result = run(tied(layer, 6), random_tokens<double>(8, 6, 6, 2.0));

  REQUIRE(result.trace.entries.size() == 1 + 6 * 3);
  CHECK(result.trace.component_names ==
        std::vector<std::string>{"projection", "attention", "feedforward"});
  std::size_t rose = 0;
  for (std::size_t i = 1; i < result.trace.entries.size(); ++i) {
    const auto& e = result.trace.entries[i];
    CHECK(e.components[0] == 0.0);
    if (e.name != "layer_norm")
      CHECK(e.status == StepStatus::ok);  // the two descent steps descend
    rose += e.status == StepStatus::energy_rose ? 1 : 0;
  }
  WARN("layer-norm projections that raised the energy: " << rose << " of 6");
  CHECK(rose == result.trace.monotonicity().increases);
}

TEMPLATE_TEST_CASE("the causal MM step reads no later token and lowers every token's energy",
                   "[causal]", float, double)
{
  using Scalar = TestType;
  for (double lambda : {0.0, 0.4}) {
    const Matrix<Scalar> P = random_tokens<Scalar>(4, 3, 7);
    const CausalAttentionEnergy<Scalar> energy(P, Scalar(lambda));
    const Matrix<Scalar> Y = random_tokens<Scalar>(9, 4, 8);
    Matrix<Scalar> out(9, 4);
    causal_mm_step(energy, Y, {Scalar(0.8)}, out);

    // A prefix's output does not depend on the tokens after it.
    Matrix<Scalar> changed = Y;
    changed.bottomRows(4) = random_tokens<Scalar>(4, 4, 9, 5.0);
    Matrix<Scalar> out_changed(9, 4);
    causal_mm_step(energy, changed, {Scalar(0.8)}, out_changed);
    CHECK((out.topRows(5) - out_changed.topRows(5)).cwiseAbs().maxCoeff() == Scalar(0));

    // Every token's own energy, given the past, does not rise.
    for (Scalar alpha : {Scalar(0.3), Scalar(1)}) {
      causal_mm_step(energy, Y, {alpha}, out);
      const Vector<Scalar> before = energy.token_energies(Y);
      const Vector<Scalar> after = energy.token_energies_given(out, Y);
      for (Eigen::Index i = 0; i < 9; ++i)
        CHECK(did_not_rise(before(i), after(i)));
    }
    if (lambda == 0.0)
      CHECK(out.row(0) == Y.row(0));  // with lambda > 0 token 0 moves towards 0
    CHECK(check::gradient_check(CausalAttentionEnergy<double>(random_tokens<double>(4, 3, 7)),
                                random_tokens<double>(5, 4, 10))
              .relative_error <= 1e-6);
  }
}

TEST_CASE("the causal MM step against causal softmax attention", "[causal][equivalence]")
{
  const Matrix<double> P = Matrix<double>::Identity(4, 4);
  const CausalAttentionEnergy<double> energy(P);
  reference::MultiHeadAttention<double> layer = check::reference_attention<double>(P, 1.0);
  reference::Masks<double> masks;
  masks.attention = reference::causal_mask(10);

  // Equal norms: exactly causal softmax attention. Norms spread by 50 %: a measured gap.
  const Matrix<double> equal = test::with_equal_metric_norms<double>(
      random_tokens<double>(10, 4, 11), P, 1.0);
  Matrix<double> out(10, 4);
  causal_mm_step(energy, equal, {1.0}, out);
  CHECK((out - reference::self_attention<double>(equal, layer, masks)).cwiseAbs().maxCoeff() <=
        1e-12);

  Matrix<double> spread = equal;
  for (Eigen::Index j = 0; j < 10; ++j)
    spread.row(j) *= 0.5 + 0.1 * double(j);
  causal_mm_step(energy, spread, {1.0}, out);
  const Matrix<double> softmax = reference::self_attention<double>(spread, layer, masks);
  const double gap = (out - softmax).norm() / out.norm();
  WARN("causal MM vs causal softmax, norms 0.5 to 1.4: relative gap " << gap);
  CHECK(gap > 0.01);
  CHECK(gap < 1.0);
  CHECK(out.row(0) == softmax.row(0));  // the first token sees only itself either way
}

TEST_CASE("combinators: summed step, Strang splitting, momentum", "[combinators]")
{
  const Eigen::Index d = 4;
  const FeedForwardEnergy<double> f(test::random_symmetric<double>(d, 1, 0.1, 0.9),
                                    random_tokens<double>(1, d, 2));
  const FeedForwardEnergy<double> g(test::random_symmetric<double>(d, 3, 0.1, 0.9),
                                    random_tokens<double>(1, d, 4));
  const Matrix<double> Y = random_tokens<double>(5, d, 5);

  // One step on f + g descends f + g for alpha <= 2 / L(f + g); here L <= 3.8.
  const auto summed = summed_gradient_step({0.25}, f, g);
  Matrix<double> out(5, d);
  summed.apply(Y, out);
  CHECK(summed.energy().value(out) < summed.energy().value(Y));
  Matrix<double> Gf(5, d), Gg(5, d);
  f.gradient(Y, Gf);
  g.gradient(Y, Gg);
  CHECK((out - (Y - 0.25 * (Gf + Gg))).cwiseAbs().maxCoeff() <= 1e-14);

  // Strang: half f, g, half f; traced against f + g as one component.
  const StrangStep strang(GradientStep(f, {0.125}), GradientStep(g, {0.25}));
  const auto strang_run = run(tied(Layer(strang), 20), Y);
  CHECK(strang_run.trace.component_names == std::vector<std::string>{"sum"});
  Matrix<double> by_hand = Y;
  gradient_step(f, by_hand, {0.125}, by_hand);
  gradient_step(g, by_hand, {0.25}, by_hand);
  gradient_step(f, by_hand, {0.125}, by_hand);
  strang.apply(Y, out);
  CHECK((out - by_hand).cwiseAbs().maxCoeff() <= 1e-14);
  // Splitting promises no monotone descent; near its fixed point the sum may creep up.
  const auto totals = strang_run.trace.layer_totals();
  CHECK(totals.back() < totals.front());
  WARN("Strang splitting, 20 steps: increases " << strang_run.trace.monotonicity().increases);

  // Lie-Trotter is the two-step layer.
  const auto lt = lie_trotter(GradientStep(f, {0.25}), GradientStep(g, {0.25}));
  CHECK(run(tied(lt, 10), Y).trace.entries.size() == 21);

  // Heavy ball: the first step is the plain step; later ones add beta (Y - Y_previous).
  const HeavyBallStep heavy(GradientStep(f, {0.25}), 0.5);
  const auto hb = run(tied(Layer(heavy), 3), Y);
  Matrix<double> y0 = Y, y1(5, d), y2(5, d), y3(5, d);
  gradient_step(f, y0, {0.25}, y1);
  gradient_step(f, y1, {0.25}, y2);
  y2 += 0.5 * (y1 - y0);
  gradient_step(f, y2, {0.25}, y3);
  y3 += 0.5 * (y2 - y1);
  CHECK((hb.tokens - y3).cwiseAbs().maxCoeff() <= 1e-13);
  CHECK((run(tied(Layer(heavy), 3), Y).tokens - y3).cwiseAbs().maxCoeff() <= 1e-13);  // reset

  // Nesterov: Y+ = step(Y + beta (Y - Y_previous)).
  const NesterovStep nesterov(GradientStep(f, {0.25}), 0.5);
  const auto nv = run(tied(Layer(nesterov), 2), Y);
  Matrix<double> z1(5, d), z2(5, d);
  gradient_step(f, Y, {0.25}, z1);
  const Matrix<double> look = z1 + 0.5 * (z1 - Y);
  gradient_step(f, look, {0.25}, z2);
  CHECK((nv.tokens - z2).cwiseAbs().maxCoeff() <= 1e-13);
  CHECK_FALSE(heavy.bound(Y).holds());

  CHECK(invalid_argument_message([&] { HeavyBallStep(GradientStep(f, {0.25}), 1.0); }) ==
        "HeavyBallStep: momentum = 1.000000, expected 0 <= momentum < 1");
}

namespace {

struct Quadratic {
  Matrix<double> A;
  Vector<double> centre;
  double value(const Vector<double>& y) const
  {
    return 0.5 * (y - centre).dot(A * (y - centre));
  }
  Vector<double> gradient(const Vector<double>& y) const { return A * (y - centre); }
};

Quadratic random_quadratic(Eigen::Index d, std::uint64_t seed, double lo, double hi)
{
  return {test::random_symmetric<double>(d, seed, lo, hi), random_tokens<double>(d, 1, seed + 1)};
}

}  // namespace

TEST_CASE("inside the Apollonius region a gradient step on g does not raise f + g",
          "[alternation]")
{
  std::size_t inside = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const Eigen::Index d = 2 + Eigen::Index(seed % 4);
    const Quadratic f = random_quadratic(d, seed, 0.2, 2.0);
    const Quadratic g = random_quadratic(d, seed + 50, 0.2, 2.0);
    const Matrix<double> H = f.A + g.A;
    const Eigen::SelfAdjointEigenSolver<Matrix<double>> eh(H), ef(f.A);
    const double mu_h = eh.eigenvalues().minCoeff(), L_h = eh.eigenvalues().maxCoeff();
    const double L_f = ef.eigenvalues().maxCoeff();
    const Vector<double> y_h = H.ldlt().solve(f.A * f.centre + g.A * g.centre);
    auto h = [&](const Vector<double>& y) { return f.value(y) + g.value(y); };

    for (std::uint64_t k = 0; k < 200; ++k) {
      const Vector<double> y = f.centre + random_tokens<double>(d, 1, 1000 * seed + k, 0.3);
      if (!apollonius_test<double>(y, f.centre, y_h, mu_h, L_f))
        continue;
      ++inside;
      const Vector<double> next = y - (1.0 / L_h) * g.gradient(y);
      CHECK(h(next) <= h(y) + 1e-12 * std::abs(h(y)));
    }
  }
  INFO("points inside the region: " << inside);
  CHECK(inside > 100);

  // The circle of ratio C: its points have ratio C.
  Vector<double> a(2), b(2);
  a << 0, 0;
  b << 3, 1;
  for (double C : {0.7, 1.5}) {
    const auto circle = apollonius_circle<double>(a, b, C);
    Vector<double> p = circle.centre;
    p(0) += circle.radius;
    CHECK(apollonius_ratio<double>(p, a, b) == Approx(C).epsilon(1e-12));
  }
}

TEST_CASE("inside the ReLU region a projected step on g does not raise f + g",
          "[alternation][relu]")
{
  std::size_t inside = 0;
  const double kappa = 0.2;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const Eigen::Index d = 2 + Eigen::Index(seed % 3);
    Quadratic f = random_quadratic(d, seed, 0.2, 2.0);
    Quadratic g = random_quadratic(d, seed + 70, 0.2, 2.0);
    f.centre = f.centre.cwiseAbs().array() + 1.0;  // y_f* inside the orthant
    g.centre = g.centre.cwiseAbs();
    const Matrix<double> H = f.A + g.A;
    const Eigen::SelfAdjointEigenSolver<Matrix<double>> eh(H), ef(f.A);
    const double mu_h = eh.eigenvalues().minCoeff(), L_h = eh.eigenvalues().maxCoeff();
    const double L_f = ef.eigenvalues().maxCoeff();
    const Vector<double> y_h = H.ldlt().solve(f.A * f.centre + g.A * g.centre);
    const auto condition = relu_condition(kappa, mu_h, L_f, L_h);
    auto h = [&](const Vector<double>& y) { return f.value(y) + g.value(y); };

    for (std::uint64_t k = 0; k < 1000; ++k) {
      const Vector<double> x =
          (f.centre + random_tokens<double>(d, 1, 7000 * seed + k, 0.5)).cwiseMax(0.0);
      const Vector<double> xi = condition.max_step_size * g.gradient(x);
      const bool near_f = (x - f.centre).norm() <= condition.radius_factor * (x - y_h).norm();
      if (!near_f || relu_divergence<double>(x, xi) < -kappa)
        continue;
      ++inside;
      const Vector<double> next = (x - xi).cwiseMax(0.0);
      CHECK(h(next) <= h(x) + 1e-12 * std::abs(h(x)));
    }
  }
  INFO("points inside the region: " << inside);
  CHECK(inside > 50);

  Vector<double> x(2), xi(2);
  x << 1, 0.5;
  xi << 0.5, 1;
  CHECK(relu_divergence<double>(x, xi) == Approx(-0.75 / 1.25));
  CHECK_THAT(invalid_argument_message([] { relu_condition(0.3, 1.0, 1.0, 1.0); }),
             Catch::Contains("relu_condition: kappa = 0.3, expected 0 <= kappa < 1/4"));
}
