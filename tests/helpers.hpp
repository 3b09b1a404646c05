#pragma once

// Shared by the tests: seeded random problems and per-type tolerances.

#include <unfold/check/gradient_check.hpp>
#include <unfold/unfold.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace unfold::test {

/// Tolerances per scalar type: `exact` for results that must agree to the last digits,
/// `descent` for "the energy did not rise" up to rounding, relative to the energy's size,
/// `gradient` for the relative error of a central-difference check (GradientCheck's
/// relative_error: O(eps^(2/3)) with the checker's step, times the ratio of the energy to its
/// gradient; in float that reached 4.2e-3 on an Energy Transformer with d = 2, where the layer
/// norm leaves the energy nearly flat).
template <class Scalar>
struct Tolerance;

template <>
struct Tolerance<double> {
  static constexpr double exact = 1e-12;
  static constexpr double descent = 1e-12;
  static constexpr double gradient = 1e-6;
};

template <>
struct Tolerance<float> {
  static constexpr float exact = 1e-5f;
  static constexpr float descent = 1e-5f;
  static constexpr float gradient = 5e-3f;
};

/// The float and double instantiations of a test templated on another type as well, for
/// TEMPLATE_LIST_TEST_CASE: `typename TestType::first_type` is T, `second_type` the scalar.
template <class... Ts>
using WithScalars = decltype(std::tuple_cat(std::tuple<std::pair<Ts, float>,
                                                       std::pair<Ts, double>>()...));

/// n x d tokens with N(0, sigma^2) entries from a fixed seed.
template <class Scalar>
Matrix<Scalar> random_tokens(Eigen::Index n, Eigen::Index d, std::uint64_t seed,
                             double sigma = 1.0)
{
  std::mt19937_64 rng(seed);
  return normal_matrix<Scalar>(n, d, Scalar(sigma), rng);
}

/// A random symmetric d x d matrix with eigenvalues clamped to [lo, hi].
template <class Scalar>
Matrix<Scalar> random_symmetric(Eigen::Index d, std::uint64_t seed, Scalar lo, Scalar hi)
{
  const Matrix<Scalar> A = random_tokens<Scalar>(d, d, seed);
  const Matrix<Scalar> sym = Scalar(0.5) * (A + A.transpose());
  return spectral_clamp(sym, lo, hi);
}

/// The energy did not rise from `before` to `after`, up to rounding relative to their size.
template <class Scalar>
bool did_not_rise(Scalar before, Scalar after)
{
  const Scalar scale = std::max({Scalar(1), std::abs(before), std::abs(after)});
  return after <= before + Tolerance<Scalar>::descent * scale;
}

/// Scales each row of Y so that ||y_j P|| = radius for all j.
template <class Scalar>
Matrix<Scalar> with_equal_metric_norms(const Matrix<Scalar>& Y, const Matrix<Scalar>& P,
                                       Scalar radius)
{
  Matrix<Scalar> out = Y;
  const Vector<Scalar> norms = (Y * P).rowwise().norm();
  for (Eigen::Index j = 0; j < Y.rows(); ++j)
    out.row(j) *= radius / norms(j);
  return out;
}

/// The scalar map X -> sum(dOut .* forward(X)) as an Energy whose gradient is `backward(X)`,
/// a vector-Jacobian product with the same dOut, so that check::gradient_check can test a
/// backward pass against central differences.
template <class S, class Forward, class Backward>
struct Contraction {
  using Scalar = S;
  Forward forward;    ///< X -> the output of the layer, the shape of dOut
  Backward backward;  ///< X -> the gradient of sum(dOut .* forward(X)), the shape of X
  Matrix<S> dOut;
  Eigen::Index cols = 0;

  static constexpr std::string_view name() { return "contraction"; }
  Eigen::Index dim() const { return cols; }
  S value(const ConstMatrixRef<S>& X) const
  {
    return (dOut.array() * forward(Matrix<S>(X)).array()).sum();
  }
  void gradient(const ConstMatrixRef<S>& X, MatrixRef<S> G) const { G = backward(Matrix<S>(X)); }
  S value_and_gradient(const ConstMatrixRef<S>& X, MatrixRef<S> G) const
  {
    gradient(X, G);
    return value(X);
  }
};

/// check::gradient_check of a backward pass at X: `forward(X)` has the shape of dOut,
/// `backward(X)` that of X; the type's default tolerances.
template <class S, class Forward, class Backward>
check::GradientCheck<S> check_backward(Forward forward, Backward backward, const Matrix<S>& X,
                                       const Matrix<S>& dOut)
{
  const Contraction<S, Forward, Backward> f{std::move(forward), std::move(backward), dOut,
                                            X.cols()};
  static_assert(check_energy<std::remove_const_t<decltype(f)>>());
  return check::gradient_check(f, X);
}

/// The exception message of `f`, or "" when it does not throw std::invalid_argument.
template <class F>
std::string invalid_argument_message(F&& f)
{
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace unfold::test
