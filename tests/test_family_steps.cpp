// Layer norm as a projection, the causal MM step, the step combinators and the sufficient
// conditions for alternating descent.

#include "helpers.hpp"

#include <unfold/check/equivalence.hpp>
#include <unfold/reference/layer_norm.hpp>

#include <limits>

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
    CHECK(check::gradient_check(CausalAttentionEnergy<Scalar>(P, Scalar(lambda)),
                                random_tokens<Scalar>(5, 4, 10))
              .relative_error <= Tolerance<Scalar>::gradient);
  }
}

TEMPLATE_TEST_CASE("the causal MM step against causal softmax attention", "[causal][equivalence]",
                   float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> P = Matrix<Scalar>::Identity(4, 4);
  const CausalAttentionEnergy<Scalar> energy(P);
  reference::MultiHeadAttention<Scalar> layer = check::reference_attention<Scalar>(P, Scalar(1));
  reference::Masks<Scalar> masks;
  masks.attention = reference::causal_mask(10);

  // Equal norms: exactly causal softmax attention. Norms spread by 50 %: a measured gap.
  const Matrix<Scalar> equal = test::with_equal_metric_norms<Scalar>(
      random_tokens<Scalar>(10, 4, 11), P, 1.0);
  Matrix<Scalar> out(10, 4);
  causal_mm_step(energy, equal, {Scalar(1)}, out);
  CHECK((out - reference::self_attention<Scalar>(equal, layer, masks)).cwiseAbs().maxCoeff() <=
        Tolerance<Scalar>::exact);

  Matrix<Scalar> spread = equal;
  for (Eigen::Index j = 0; j < 10; ++j)
    spread.row(j) *= Scalar(0.5 + 0.1 * double(j));
  causal_mm_step(energy, spread, {Scalar(1)}, out);
  const Matrix<Scalar> softmax = reference::self_attention<Scalar>(spread, layer, masks);
  const Scalar gap = (out - softmax).norm() / out.norm();
  WARN("causal MM vs causal softmax, norms 0.5 to 1.4: relative gap " << gap);
  CHECK(gap > 0.01);
  CHECK(gap < 1.0);
  CHECK(out.row(0) == softmax.row(0));  // the first token sees only itself either way
}

TEMPLATE_TEST_CASE("combinators: summed step, Strang splitting, momentum", "[combinators]", float,
                   double)
{
  using Scalar = TestType;
  // Entries of a few units, a few roundings apart: 64 and 512 ulps of 1.
  const Scalar tight = 64 * std::numeric_limits<Scalar>::epsilon();
  const Scalar loose = 512 * std::numeric_limits<Scalar>::epsilon();
  const Eigen::Index d = 4;
  const FeedForwardEnergy<Scalar> f(test::random_symmetric<Scalar>(d, 1, Scalar(0.1), Scalar(0.9)),
                                    random_tokens<Scalar>(1, d, 2));
  const FeedForwardEnergy<Scalar> g(test::random_symmetric<Scalar>(d, 3, Scalar(0.1), Scalar(0.9)),
                                    random_tokens<Scalar>(1, d, 4));
  const Matrix<Scalar> Y = random_tokens<Scalar>(5, d, 5);

  // One step on f + g descends f + g for alpha <= 2 / L(f + g); here L <= 3.8.
  const auto summed = summed_gradient_step({Scalar(0.25)}, f, g);
  Matrix<Scalar> out(5, d);
  summed.apply(Y, out);
  CHECK(summed.energy().value(out) < summed.energy().value(Y));
  Matrix<Scalar> Gf(5, d), Gg(5, d);
  f.gradient(Y, Gf);
  g.gradient(Y, Gg);
  CHECK((out - (Y - Scalar(0.25) * (Gf + Gg))).cwiseAbs().maxCoeff() <= tight);

  // Strang: half f, g, half f; traced against f + g as one component.
  const StrangStep strang(GradientStep(f, {Scalar(0.125)}), GradientStep(g, {Scalar(0.25)}));
  const auto strang_run = run(tied(Layer(strang), 20), Y);
  CHECK(strang_run.trace.component_names == std::vector<std::string>{"sum"});
  Matrix<Scalar> by_hand = Y;
  gradient_step(f, by_hand, {Scalar(0.125)}, by_hand);
  gradient_step(g, by_hand, {Scalar(0.25)}, by_hand);
  gradient_step(f, by_hand, {Scalar(0.125)}, by_hand);
  strang.apply(Y, out);
  CHECK((out - by_hand).cwiseAbs().maxCoeff() <= tight);
  // Splitting promises no monotone descent; near its fixed point the sum may creep up.
  const auto totals = strang_run.trace.layer_totals();
  CHECK(totals.back() < totals.front());
  WARN("Strang splitting, 20 steps: increases " << strang_run.trace.monotonicity().increases);

  // Lie-Trotter is the two-step layer.
  const auto lt = lie_trotter(GradientStep(f, {Scalar(0.25)}), GradientStep(g, {Scalar(0.25)}));
  CHECK(run(tied(lt, 10), Y).trace.entries.size() == 21);

  // Heavy ball: the first step is the plain step; later ones add beta (Y - Y_previous).
  const HeavyBallStep heavy(GradientStep(f, {Scalar(0.25)}), Scalar(0.5));
  const auto hb = run(tied(Layer(heavy), 3), Y);
  Matrix<Scalar> y0 = Y, y1(5, d), y2(5, d), y3(5, d);
  gradient_step(f, y0, {Scalar(0.25)}, y1);
  gradient_step(f, y1, {Scalar(0.25)}, y2);
  y2 += Scalar(0.5) * (y1 - y0);
  gradient_step(f, y2, {Scalar(0.25)}, y3);
  y3 += Scalar(0.5) * (y2 - y1);
  CHECK((hb.tokens - y3).cwiseAbs().maxCoeff() <= loose);
  CHECK((run(tied(Layer(heavy), 3), Y).tokens - y3).cwiseAbs().maxCoeff() <= loose);  // reset

  // Nesterov: Y+ = step(Y + beta (Y - Y_previous)).
  const NesterovStep nesterov(GradientStep(f, {Scalar(0.25)}), Scalar(0.5));
  const auto nv = run(tied(Layer(nesterov), 2), Y);
  Matrix<Scalar> z1(5, d), z2(5, d);
  gradient_step(f, Y, {Scalar(0.25)}, z1);
  const Matrix<Scalar> look = z1 + Scalar(0.5) * (z1 - Y);
  gradient_step(f, look, {Scalar(0.25)}, z2);
  CHECK((nv.tokens - z2).cwiseAbs().maxCoeff() <= loose);
  CHECK_FALSE(heavy.bound(Y).holds());

  CHECK(invalid_argument_message([&] {
          HeavyBallStep(GradientStep(f, {Scalar(0.25)}), Scalar(1));
        }) == "HeavyBallStep: momentum = 1.000000, expected 0 <= momentum < 1");
}

namespace {

template <class Scalar>
struct Quadratic {
  Matrix<Scalar> A;
  Vector<Scalar> centre;
  Scalar value(const Vector<Scalar>& y) const
  {
    return Scalar(0.5) * (y - centre).dot(A * (y - centre));
  }
  Vector<Scalar> gradient(const Vector<Scalar>& y) const { return A * (y - centre); }
};

template <class Scalar>
Quadratic<Scalar> random_quadratic(Eigen::Index d, std::uint64_t seed, double lo, double hi)
{
  return {test::random_symmetric<Scalar>(d, seed, Scalar(lo), Scalar(hi)),
          random_tokens<Scalar>(d, 1, seed + 1)};
}

}  // namespace

TEMPLATE_TEST_CASE("inside the Apollonius region a gradient step on g does not raise f + g",
                   "[alternation]", float, double)
{
  using Scalar = TestType;
  std::size_t inside = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const Eigen::Index d = 2 + Eigen::Index(seed % 4);
    const Quadratic<Scalar> f = random_quadratic<Scalar>(d, seed, 0.2, 2.0);
    const Quadratic<Scalar> g = random_quadratic<Scalar>(d, seed + 50, 0.2, 2.0);
    const Matrix<Scalar> H = f.A + g.A;
    const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eh(H), ef(f.A);
    const Scalar mu_h = eh.eigenvalues().minCoeff(), L_h = eh.eigenvalues().maxCoeff();
    const Scalar L_f = ef.eigenvalues().maxCoeff();
    const Vector<Scalar> y_h = H.ldlt().solve(f.A * f.centre + g.A * g.centre);
    auto h = [&](const Vector<Scalar>& y) { return f.value(y) + g.value(y); };

    for (std::uint64_t k = 0; k < 200; ++k) {
      const Vector<Scalar> y = f.centre + random_tokens<Scalar>(d, 1, 1000 * seed + k, 0.3);
      if (!apollonius_test<Scalar>(y, f.centre, y_h, mu_h, L_f))
        continue;
      ++inside;
      const Vector<Scalar> next = y - (1 / L_h) * g.gradient(y);
      CHECK(h(next) <= h(y) + Tolerance<Scalar>::descent * std::abs(h(y)));
    }
  }
  INFO("points inside the region: " << inside);
  CHECK(inside > 100);

  // The circle of ratio C: its points have ratio C.
  Vector<Scalar> a(2), b(2);
  a << 0, 0;
  b << 3, 1;
  for (const Scalar C : {Scalar(0.7), Scalar(1.5)}) {
    const auto circle = apollonius_circle<Scalar>(a, b, C);
    Vector<Scalar> p = circle.centre;
    p(0) += circle.radius;
    CHECK(apollonius_ratio<Scalar>(p, a, b) == Approx(C).epsilon(Tolerance<Scalar>::exact));
  }
}

TEMPLATE_TEST_CASE("inside the ReLU region a projected step on g does not raise f + g",
                   "[alternation][relu]", float, double)
{
  using Scalar = TestType;
  std::size_t inside = 0;
  const Scalar kappa = Scalar(0.2);
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const Eigen::Index d = 2 + Eigen::Index(seed % 3);
    Quadratic<Scalar> f = random_quadratic<Scalar>(d, seed, 0.2, 2.0);
    Quadratic<Scalar> g = random_quadratic<Scalar>(d, seed + 70, 0.2, 2.0);
    f.centre = f.centre.cwiseAbs().array() + Scalar(1);  // y_f* inside the orthant
    g.centre = g.centre.cwiseAbs();
    const Matrix<Scalar> H = f.A + g.A;
    const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eh(H), ef(f.A);
    const Scalar mu_h = eh.eigenvalues().minCoeff(), L_h = eh.eigenvalues().maxCoeff();
    const Scalar L_f = ef.eigenvalues().maxCoeff();
    const Vector<Scalar> y_h = H.ldlt().solve(f.A * f.centre + g.A * g.centre);
    const auto condition = relu_condition(kappa, mu_h, L_f, L_h);
    auto h = [&](const Vector<Scalar>& y) { return f.value(y) + g.value(y); };

    for (std::uint64_t k = 0; k < 1000; ++k) {
      const Vector<Scalar> x =
          (f.centre + random_tokens<Scalar>(d, 1, 7000 * seed + k, 0.5)).cwiseMax(Scalar(0));
      const Vector<Scalar> xi = condition.max_step_size * g.gradient(x);
      const bool near_f = (x - f.centre).norm() <= condition.radius_factor * (x - y_h).norm();
      if (!near_f || relu_divergence<Scalar>(x, xi) < -kappa)
        continue;
      ++inside;
      const Vector<Scalar> next = (x - xi).cwiseMax(Scalar(0));
      CHECK(h(next) <= h(x) + Tolerance<Scalar>::descent * std::abs(h(x)));
    }
  }
  INFO("points inside the region: " << inside);
  CHECK(inside > 50);

  Vector<Scalar> x(2), xi(2);
  x << 1, 0.5;
  xi << 0.5, 1;
  CHECK(relu_divergence<Scalar>(x, xi) == Approx(-0.75 / 1.25));
  CHECK_THAT(invalid_argument_message([] {
               relu_condition(Scalar(0.3), Scalar(1), Scalar(1), Scalar(1));
             }),
             Catch::Contains("relu_condition: kappa = 0.3, expected 0 <= kappa < 1/4"));
}
