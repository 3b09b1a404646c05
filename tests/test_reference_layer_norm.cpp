#include "unfold/io/npy.hpp"
#include "unfold/reference/layer_norm.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using unfold::Matrix;
using unfold::RowVector;
using unfold::reference::LayerNorm;
using unfold::reference::layer_norm;
using Catch::Matchers::Contains;

// Tolerances against PyTorch: |got - want| <= atol + rtol |want|.
template <class Scalar>
struct Tolerance;

template <>
struct Tolerance<float> {
  static constexpr double atol = 1e-5;
  static constexpr double rtol = 1e-4;
  static constexpr const char* tag = "f32";
};

template <>
struct Tolerance<double> {
  static constexpr double atol = 1e-12;
  static constexpr double rtol = 0.0;
  static constexpr const char* tag = "f64";
};

std::string fixture_path(const std::string& name, const std::string& file)
{
  return std::string(UNFOLD_FIXTURE_DIR) + "/" + name + "/" + file + ".npy";
}

// Parameters and inputs are stored in float64; float32 runs use their float rounding.
template <class Scalar>
Matrix<Scalar> load(const std::string& name, const std::string& file)
{
  return unfold::io::read_npy_matrix<double>(fixture_path(name, file)).template cast<Scalar>();
}

template <class Scalar>
void require_close(const Matrix<Scalar>& got, const Matrix<Scalar>& want)
{
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  double max_abs_error = 0.0;
  double worst_ratio = 0.0;
  for (Eigen::Index j = 0; j < want.cols(); ++j)
    for (Eigen::Index i = 0; i < want.rows(); ++i) {
      const double error = std::abs(double(got(i, j)) - double(want(i, j)));
      const double allowed = Tolerance<Scalar>::atol +
                             Tolerance<Scalar>::rtol * std::abs(double(want(i, j)));
      max_abs_error = std::max(max_abs_error, error);
      worst_ratio = std::max(worst_ratio, error / allowed);
    }
  INFO("max_abs_error = " << std::scientific << max_abs_error);
  REQUIRE(worst_ratio <= 1.0);
}

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
