#include "fixtures.hpp"
#include "helpers.hpp"
#include "unfold/io/npy.hpp"
#include "unfold/reference/layer_norm.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using unfold::Matrix;
using unfold::RowVector;
using unfold::reference::LayerNorm;
using unfold::reference::LayerNormGradient;
using unfold::reference::RecordedLayerNorm;
using unfold::reference::layer_norm;
using unfold::reference::layer_norm_backward;
using unfold::test::check_backward;
using unfold::test::random_tokens;
using Catch::Matchers::Contains;
using unfold::test::fixture_path;
using unfold::test::load;
using unfold::test::require_close;
template <class Scalar>
using Tolerance = unfold::test::TorchTolerance<Scalar>;

}  // namespace

TEMPLATE_TEST_CASE("layer_norm matches torch.nn.LayerNorm", "[layer_norm][fixture]", float,
                   double)
{
  using Scalar = TestType;
  for (const std::string name :
       {"ln_affine_d6", "ln_plain_d8", "ln_d1_affine", "ln_large_mean", "ln_n1_eps"}) {
    INFO("fixture " << name << " (" << Tolerance<Scalar>::tag << ")");
    LayerNorm<Scalar> params;
    params.eps = Scalar(unfold::io::read_npy_matrix<double>(fixture_path(name, "eps"))(0, 0));
    if (std::filesystem::exists(fixture_path(name, "weight"))) {
      params.gain = load<Scalar>(name, "weight");
      params.bias = load<Scalar>(name, "bias");
    }
    const Matrix<Scalar> out = layer_norm<Scalar>(load<Scalar>(name, "input"), params);

    // PyTorch's float kernel forms x rstd - mean rstd and cancels about |x| rstd eps_float:
    // ~3e-5 for d = 1 (rstd = 1/sqrt(eps)), ~1e-4 for the rows of mean 2000 (inputs exact in
    // float). There the float result is held to PyTorch's float64 output, and must be at least
    // as close to it as PyTorch's own float32 output.
    const bool torch_float_inexact =
        std::is_same_v<Scalar, float> && (name == "ln_d1_affine" || name == "ln_large_mean");
    const std::string tag = torch_float_inexact ? "f64" : Tolerance<Scalar>::tag;
    const Matrix<Scalar> want =
        unfold::io::read_npy_matrix<double>(fixture_path(name, "output_" + tag))
            .template cast<Scalar>();
    require_close(out, want);
    if (torch_float_inexact) {
      const Matrix<Scalar> torch_float =
          unfold::io::read_npy_matrix<Scalar>(fixture_path(name, "output_f32"));
      const Scalar ours = (out - want).cwiseAbs().maxCoeff();
      const Scalar theirs = (torch_float - want).cwiseAbs().maxCoeff();
      INFO("reference error " << ours << ", PyTorch float32 error " << theirs);
      REQUIRE(ours <= theirs);
    }
  }
}

TEMPLATE_TEST_CASE("layer_norm of one-hot and tiny rows gives the known values",
                   "[layer_norm]", float, double)
{
  using Scalar = TestType;
  const double tol = 5e-7;

  Matrix<Scalar> one_hot(1, 4);
  one_hot << 1, 0, 0, 0;
  const Matrix<Scalar> a = layer_norm<Scalar>(one_hot, LayerNorm<Scalar>{});
  CHECK(double(a(0, 0)) == Approx(1.7320046).margin(tol));
  for (Eigen::Index j = 1; j < 4; ++j)
    CHECK(double(a(0, j)) == Approx(-0.5773349).margin(tol));

  // The spread 1e-3 is comparable to sqrt(eps): eps visibly shrinks the output.
  Matrix<Scalar> tiny(1, 2);
  tiny << 0, Scalar(1e-3);
  const Matrix<Scalar> b = layer_norm<Scalar>(tiny, LayerNorm<Scalar>{});
  CHECK(double(b(0, 0)) == Approx(-0.1561738).margin(tol));
  CHECK(double(b(0, 1)) == Approx(0.1561738).margin(tol));
}

TEST_CASE("layer_norm in float keeps the variance of a row with mean 2000 and variance ~1",
          "[layer_norm][float]")
{
  Matrix<float> Y(1, 4);
  Y << 2000.4f, 2001.3f, 1998.6f, 2000.1f;
  const Matrix<float> out = layer_norm<float>(Y, LayerNorm<float>{});

  // The same float inputs normalised in double.
  const Matrix<double> Yd = Y.cast<double>();
  const double mean = Yd.mean();
  const double var = (Yd.array() - mean).square().mean();
  const Matrix<double> want = ((Yd.array() - mean) / std::sqrt(var + 1e-5)).matrix();
  INFO("variance " << var);
  REQUIRE((out.cast<double>() - want).cwiseAbs().maxCoeff() <= 1e-4);

  // A one-pass E[x^2] - E[x]^2 in float loses this variance; the two-pass mean does not.
  const double out_var = out.cast<double>().array().square().mean();
  REQUIRE(out_var == Approx(var / (var + 1e-5)).margin(1e-4));
}

TEMPLATE_TEST_CASE("layer_norm of a single feature returns exactly the bias", "[layer_norm]",
                   float, double)
{
  using Scalar = TestType;
  Matrix<Scalar> Y(3, 1);
  Y << Scalar(5.5), Scalar(-1e6), 0;
  LayerNorm<Scalar> params;
  params.gain = RowVector<Scalar>::Constant(1, Scalar(3));
  params.bias = RowVector<Scalar>::Constant(1, Scalar(0.125));
  const Matrix<Scalar> out = layer_norm<Scalar>(Y, params);
  REQUIRE(out == Matrix<Scalar>::Constant(3, 1, Scalar(0.125)));

  params.bias.resize(0);
  REQUIRE(layer_norm<Scalar>(Y, params) == Matrix<Scalar>::Zero(3, 1));
}

TEMPLATE_TEST_CASE("layer_norm applies gain and bias after normalising, and either alone",
                   "[layer_norm]", float, double)
{
  using Scalar = TestType;
  Matrix<Scalar> Y(2, 3);
  Y << 1, 2, 4, -3, 0, Scalar(0.5);
  const Matrix<Scalar> plain = layer_norm<Scalar>(Y, LayerNorm<Scalar>{});

  LayerNorm<Scalar> params;
  params.gain.resize(3);
  params.gain << 2, Scalar(-1), Scalar(0.5);
  const Matrix<Scalar> scaled = layer_norm<Scalar>(Y, params);
  REQUIRE((scaled - plain * params.gain.asDiagonal()).cwiseAbs().maxCoeff() == Scalar(0));

  params.gain.resize(0);
  params.bias = RowVector<Scalar>::Constant(3, Scalar(0.25));
  const Matrix<Scalar> shifted = layer_norm<Scalar>(Y, params);
  REQUIRE((shifted - (plain.rowwise() + params.bias)).cwiseAbs().maxCoeff() == Scalar(0));

  // Each normalised row has zero mean and biased variance 1 - eps / (var + eps).
  const auto row_mean = plain.rowwise().mean();
  REQUIRE(row_mean.cwiseAbs().maxCoeff() <= 8 * std::numeric_limits<Scalar>::epsilon());
}

TEMPLATE_TEST_CASE("layer_norm batch overload normalises each sequence", "[layer_norm]",
                   float, double)
{
  using Scalar = TestType;
  const std::vector<Matrix<Scalar>> Y = {Matrix<Scalar>::Random(2, 4),
                                         Matrix<Scalar>::Random(5, 4)};
  const auto out = layer_norm(Y, LayerNorm<Scalar>{});
  REQUIRE(out.size() == 2);
  REQUIRE(out[1] == layer_norm<Scalar>(Y[1], LayerNorm<Scalar>{}));
}

TEST_CASE("layer_norm rejects bad arguments, naming function, argument and shapes",
          "[layer_norm][errors]")
{
  const Matrix<double> Y = Matrix<double>::Random(3, 4);
  LayerNorm<double> params;

  params.gain = RowVector<double>::Ones(3);
  REQUIRE_THROWS_WITH(layer_norm<double>(Y, params),
                      Contains("unfold::reference::layer_norm") &&
                          Contains("gain is 1 x 3, expected 1 x 4"));
  params.gain.resize(0);
  params.bias = RowVector<double>::Ones(5);
  REQUIRE_THROWS_WITH(layer_norm<double>(Y, params), Contains("bias is 1 x 5, expected 1 x 4"));
  params.bias.resize(0);

  params.eps = 0;
  REQUIRE_THROWS_WITH(layer_norm<double>(Y, params), Contains("eps = 0"));
  params.eps = 1e-5;

  Matrix<double> bad = Y;
  bad(2, 1) = std::numeric_limits<double>::infinity();
  REQUIRE_THROWS_WITH(layer_norm<double>(bad, params),
                      Contains("Y (3 x 4) has a non-finite entry inf at (2, 1)"));
  REQUIRE_THROWS_WITH(layer_norm<double>(Matrix<double>(0, 4), params),
                      Contains("Y is 0 x 4, expected at least 1 x 1"));
}

// ---------------------------------------------------------------------------------------------
// Backward pass

namespace {

// Checks dY, dGain and dBias of layer_norm_backward at Y against central differences.
template <class Scalar>
void require_backward_matches_differences(const Matrix<Scalar>& Y,
                                          const LayerNorm<Scalar>& params, std::uint64_t seed)
{
  const Matrix<Scalar> dOut = random_tokens<Scalar>(Y.rows(), Y.cols(), seed);
  const LayerNormGradient<Scalar> g = layer_norm_backward<Scalar>(Y, params, dOut);
  REQUIRE(g.dY.allFinite());

  const auto by_input = check_backward<Scalar>(
      [&](const Matrix<Scalar>& X) { return layer_norm<Scalar>(X, params); },
      [&](const Matrix<Scalar>& X) { return layer_norm_backward<Scalar>(X, params, dOut).dY; },
      Y, dOut);
  INFO("seed " << seed << ", n = " << Y.rows() << ", d = " << Y.cols() << ": dY worst ratio "
               << by_input.worst_ratio << ", relative error " << by_input.relative_error);
  CHECK(by_input.passed());

  if (params.gain.size() != 0) {
    const auto by_gain = check_backward<Scalar>(
        [&](const Matrix<Scalar>& gain) {
          LayerNorm<Scalar> p = params;
          p.gain = gain;
          return layer_norm<Scalar>(Y, p);
        },
        [&](const Matrix<Scalar>& gain) {
          LayerNorm<Scalar> p = params;
          p.gain = gain;
          return Matrix<Scalar>(layer_norm_backward<Scalar>(Y, p, dOut).dGain);
        },
        Matrix<Scalar>(params.gain), dOut);
    INFO("dGain worst ratio " << by_gain.worst_ratio << ", relative error "
                              << by_gain.relative_error);
    CHECK(by_gain.passed());
  } else {
    CHECK(g.dGain.size() == 0);
  }

  if (params.bias.size() != 0) {
    // The output is affine in the bias: dBias is exactly the column sums of dOut.
    CHECK(g.dBias == dOut.colwise().sum());
    const auto by_bias = check_backward<Scalar>(
        [&](const Matrix<Scalar>& bias) {
          LayerNorm<Scalar> p = params;
          p.bias = bias;
          return layer_norm<Scalar>(Y, p);
        },
        [&](const Matrix<Scalar>&) { return Matrix<Scalar>(g.dBias); },
        Matrix<Scalar>(params.bias), dOut);
    INFO("dBias worst ratio " << by_bias.worst_ratio);
    CHECK(by_bias.passed());
  } else {
    CHECK(g.dBias.size() == 0);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("layer_norm_backward matches central differences in Y, gain and bias",
                   "[layer_norm][backward]", float, double)
{
  using Scalar = TestType;
  for (const auto& [n, d, seed] : std::vector<std::array<int, 3>>{
           {4, 6, 11}, {1, 5, 12}, {3, 2, 13}, {6, 16, 14}}) {
    const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, std::uint64_t(seed), 1.5);
    LayerNorm<Scalar> affine;
    affine.gain = random_tokens<Scalar>(1, d, std::uint64_t(seed) + 100);
    affine.bias = random_tokens<Scalar>(1, d, std::uint64_t(seed) + 200);
    require_backward_matches_differences(Y, affine, std::uint64_t(seed) + 300);
    require_backward_matches_differences(Y, LayerNorm<Scalar>{}, std::uint64_t(seed) + 400);
  }

  // Duplicate tokens: equal rows get equal gradients for equal upstream rows.
  Matrix<Scalar> twins = random_tokens<Scalar>(3, 5, 21);
  twins.row(2) = twins.row(0);
  LayerNorm<Scalar> params;
  params.gain = random_tokens<Scalar>(1, 5, 22);
  require_backward_matches_differences(twins, params, 23);
  Matrix<Scalar> dOut = random_tokens<Scalar>(3, 5, 24);
  dOut.row(2) = dOut.row(0);
  const Matrix<Scalar> dY = layer_norm_backward<Scalar>(twins, params, dOut).dY;
  const Scalar twin_gap = (dY.row(2) - dY.row(0)).cwiseAbs().maxCoeff();
  INFO("|dY_2 - dY_0| = " << twin_gap);  // not always 0: SIMD lanes round differently
  REQUIRE(twin_gap <= 8 * std::numeric_limits<Scalar>::epsilon() * dY.cwiseAbs().maxCoeff());
}

TEMPLATE_TEST_CASE("a single-feature layer_norm has zero gradient in Y and in the gain",
                   "[layer_norm][backward]", float, double)
{
  using Scalar = TestType;
  Matrix<Scalar> Y(4, 1);
  Y << Scalar(5.5), Scalar(-1e6), 0, Scalar(0.1);
  LayerNorm<Scalar> params;
  params.gain = RowVector<Scalar>::Constant(1, Scalar(3));
  params.bias = RowVector<Scalar>::Constant(1, Scalar(0.125));
  REQUIRE(layer_norm<Scalar>(Y, params) == Matrix<Scalar>::Constant(4, 1, Scalar(0.125)));

  Matrix<Scalar> dOut(4, 1);
  dOut << 1, Scalar(-2), Scalar(0.5), 7;
  const LayerNormGradient<Scalar> g = layer_norm_backward<Scalar>(Y, params, dOut);
  REQUIRE(g.dY == Matrix<Scalar>::Zero(4, 1));
  REQUIRE(g.dGain == RowVector<Scalar>::Zero(1));
  REQUIRE(g.dBias == RowVector<Scalar>::Constant(1, Scalar(6.5)));
  require_backward_matches_differences(Matrix<Scalar>(Y.bottomRows(1)), params, 31);
}

TEMPLATE_TEST_CASE("a constant row gives exact zeros and finite gradients",
                   "[layer_norm][backward]", float, double)
{
  using Scalar = TestType;
  // sum(x) / d misses a constant value by an ulp for some d (1e6 with d = 7 in float); divided
  // by sqrt(eps) that gave outputs near 1. The corrected mean is exact on every row here.
  for (const Scalar c : {Scalar(1e6) + Scalar(0.25), Scalar(2000.1), Scalar(0.1), Scalar(-3.3)})
    for (Eigen::Index d = 2; d <= 12; ++d) {
      INFO("row of " << d << " entries " << c);
      const Matrix<Scalar> Y = Matrix<Scalar>::Constant(2, d, c);
      LayerNorm<Scalar> params;
      params.bias = RowVector<Scalar>::LinSpaced(d, Scalar(-1), Scalar(1));
      const Matrix<Scalar> out = layer_norm<Scalar>(Y, params);
      REQUIRE((out.rowwise() - params.bias).cwiseAbs().maxCoeff() == Scalar(0));

      params.gain = RowVector<Scalar>::Constant(d, Scalar(2));
      const Matrix<Scalar> dOut = random_tokens<Scalar>(2, d, std::uint64_t(d));
      const LayerNormGradient<Scalar> g = layer_norm_backward<Scalar>(Y, params, dOut);
      REQUIRE(g.dY.allFinite());
      REQUIRE(g.dGain == RowVector<Scalar>::Zero(d));

      // At a constant row x_hat = 0 and r = 1 / sqrt(eps): dY = r (g - mean(g)), g = 2 dOut.
      const Matrix<double> G = 2.0 * dOut.template cast<double>();
      const Matrix<double> want = (G.colwise() - G.rowwise().mean()) / std::sqrt(1e-5);
      const double error = (g.dY.template cast<double>() - want).cwiseAbs().maxCoeff();
      INFO("|dY - r (g - mean g)| = " << error << " of " << want.cwiseAbs().maxCoeff());
      REQUIRE(error <= 16 * std::numeric_limits<Scalar>::epsilon() * want.cwiseAbs().maxCoeff());
    }

  // Central differences at a constant row of moderate size (double: the step must be small
  // next to sqrt(eps) = 3e-3, which the float step 5e-3 is not).
  if constexpr (std::is_same_v<Scalar, double>) {
    LayerNorm<double> params;
    params.eps = 1e-2;
    require_backward_matches_differences(Matrix<double>(Matrix<double>::Constant(2, 4, 0.5)),
                                         params, 41);
  }
}

TEST_CASE("layer_norm_backward in float keeps the gradient of the mean-2000 row",
          "[layer_norm][backward][float]")
{
  Matrix<float> Y(2, 4);
  Y << 2000.4f, 2001.3f, 1998.6f, 2000.1f,  //
      -1998.6f, -2000.4f, -2001.3f, -2000.1f;
  LayerNorm<float> params;
  params.gain.resize(4);
  params.gain << 1.5f, -0.5f, 2.0f, 1.0f;
  params.bias = RowVector<float>::Constant(4, 0.25f);
  Matrix<float> dOut(2, 4);
  dOut << 0.3f, -1.2f, 0.7f, 2.0f, -0.4f, 0.9f, 1.1f, -0.6f;
  const LayerNormGradient<float> g = layer_norm_backward<float>(Y, params, dOut);

  // The same float inputs in double, whose backward pass the difference tests check.
  LayerNorm<double> wide;
  wide.gain = params.gain.cast<double>();
  wide.bias = params.bias.cast<double>();
  const LayerNormGradient<double> want =
      layer_norm_backward<double>(Y.cast<double>(), wide, dOut.cast<double>());
  const double dY_error = (g.dY.cast<double>() - want.dY).cwiseAbs().maxCoeff();
  const double dGain_error = (g.dGain.cast<double>() - want.dGain).cwiseAbs().maxCoeff();
  INFO("|dY - dY_double| = " << dY_error << " of " << want.dY.cwiseAbs().maxCoeff()
                             << ", |dGain - dGain_double| = " << dGain_error);
  // The float mean is within half an ulp of 2000 (6.1e-5) of the true one, which moves x_hat
  // by about that over std ~1: the error allowed is 4 such ulps. A one-pass E[x^2] - E[x]^2 in
  // float gives the variance 0.5 instead of 0.945 for the first row, an error of ~40 %.
  const double ulp = std::nextafter(2000.0f, 3000.0f) - 2000.0f;
  REQUIRE(dY_error <= 4 * ulp * want.dY.cwiseAbs().maxCoeff());
  REQUIRE(dGain_error <= 4 * ulp * want.dGain.cwiseAbs().maxCoeff());
}

TEMPLATE_TEST_CASE("RecordedLayerNorm records the forward pass for its backward pass",
                   "[layer_norm][backward][order]", float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> Y = random_tokens<Scalar>(3, 4, 51);
  const Matrix<Scalar> dOut = random_tokens<Scalar>(3, 4, 52);
  LayerNorm<Scalar> params;
  params.gain = random_tokens<Scalar>(1, 4, 53);
  params.bias = random_tokens<Scalar>(1, 4, 54);
  RecordedLayerNorm<Scalar> norm(params);
  REQUIRE_FALSE(norm.recorded());
  REQUIRE_THROWS_MATCHES(norm.backward(dOut), std::logic_error,
                         Catch::Matchers::Message(
                             "unfold::reference::RecordedLayerNorm::backward: no forward pass "
                             "is recorded; call forward(Y) first"));

  REQUIRE(norm.forward(Y) == layer_norm<Scalar>(Y, params));
  REQUIRE(norm.recorded());
  const LayerNormGradient<Scalar> g = norm.backward(dOut);
  const LayerNormGradient<Scalar> want = layer_norm_backward<Scalar>(Y, params, dOut);
  REQUIRE(g.dY == want.dY);
  REQUIRE(g.dGain == want.dGain);
  REQUIRE(g.dBias == want.dBias);
  REQUIRE(norm.backward(dOut).dY == want.dY);  // backward may be repeated

  // A bad dOut is a bad argument, not a wrong order.
  REQUIRE_THROWS_AS(norm.backward(Matrix<Scalar>::Zero(3, 5)), std::invalid_argument);

  // A forward that throws records nothing: no gradient of a stale input.
  REQUIRE_THROWS_AS(norm.forward(Matrix<Scalar>::Zero(3, 5)), std::invalid_argument);
  REQUIRE_FALSE(norm.recorded());
  REQUIRE_THROWS_AS(norm.backward(dOut), std::logic_error);

  norm.forward(Y);
  norm.clear();
  REQUIRE_THROWS_WITH(norm.backward(dOut), Contains("call forward(Y) first"));
}

TEST_CASE("layer_norm_backward rejects bad arguments, naming function, argument and shapes",
          "[layer_norm][backward][errors]")
{
  const Matrix<double> Y = Matrix<double>::Random(3, 4);
  const LayerNorm<double> params;
  REQUIRE_THROWS_WITH(layer_norm_backward<double>(Y, params, Matrix<double>::Zero(3, 3)),
                      Contains("unfold::reference::layer_norm_backward") &&
                          Contains("dOut is 3 x 3, expected 3 x 4"));
  REQUIRE_THROWS_WITH(layer_norm_backward<double>(Y, params, Matrix<double>::Zero(2, 4)),
                      Contains("dOut is 2 x 4, expected 3 x 4"));
  Matrix<double> dOut = Matrix<double>::Zero(3, 4);
  dOut(1, 3) = std::nan("");
  REQUIRE_THROWS_WITH(layer_norm_backward<double>(Y, params, dOut),
                      Contains("layer_norm_backward") &&
                          Contains("dOut (3 x 4) has a non-finite entry nan at (1, 3)"));
  Matrix<double> bad = Y;
  bad(0, 0) = std::nan("");
  REQUIRE_THROWS_WITH(layer_norm_backward<double>(bad, params, Matrix<double>::Zero(3, 4)),
                      Contains("layer_norm_backward") && Contains("Y (3 x 4)"));
  RecordedLayerNorm<double> norm(params);
  norm.forward(Y);
  REQUIRE_THROWS_WITH(norm.backward(dOut), Contains("RecordedLayerNorm::backward") &&
                                               Contains("dOut (3 x 4) has a non-finite"));
}
