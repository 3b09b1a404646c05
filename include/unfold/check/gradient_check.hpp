#pragma once

/// \file
/// A central-difference gradient checker for any Energy.

#include "../core/concepts.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace unfold::check {

/// Default tolerances of the elementwise test |g - fd| <= atol + rtol |fd| per scalar type.
/// Central differences in float need a larger step and tolerance than in double: the step is
/// h = cbrt(eps) max(1, |y|) (about 6e-6 in double, 5e-3 in float), the truncation and
/// rounding errors are then O(eps^(2/3)).
template <Real Scalar>
struct GradientTolerance;

template <>
struct GradientTolerance<double> {
  static constexpr double rtol = 1e-6;
  static constexpr double atol = 1e-9;
};

template <>
struct GradientTolerance<float> {
  static constexpr float rtol = 1e-3f;
  static constexpr float atol = 1e-3f;
};

template <Real Scalar>
struct GradientCheck {
  /// max_ij |g_ij - fd_ij| / (atol + rtol |fd_ij|) for the tolerances the check was run with:
  /// the elementwise test passes when it is <= 1.
  Scalar worst_ratio = 0;

  /// Whether every entry passed |g - fd| <= atol + rtol |fd|.
  bool passed() const { return worst_ratio <= Scalar(1); }

  /// max_ij |g_ij - fd_ij| / max(|g|_inf, |fd|_inf, floor): the error relative to the size of
  /// the gradient as a whole, so that near-zero entries do not dominate.
  Scalar relative_error = 0;

  /// max_ij |g_ij - fd_ij|.
  Scalar absolute_error = 0;

  /// The entry where the absolute error is largest.
  Eigen::Index row = 0;
  Eigen::Index col = 0;
};

/// Compares `energy.gradient` at Y with central differences
/// (E(Y + h e_ij) - E(Y - h e_ij)) / 2h, with the relative step h = cbrt(eps) max(1, |y_ij|).
template <Energy E>
GradientCheck<typename E::Scalar> gradient_check(
    const E& energy, const Matrix<typename E::Scalar>& Y,
    typename E::Scalar rtol = GradientTolerance<typename E::Scalar>::rtol,
    typename E::Scalar atol = GradientTolerance<typename E::Scalar>::atol)
{
  using Scalar = typename E::Scalar;
  const Scalar base_step = std::cbrt(std::numeric_limits<Scalar>::epsilon());

  Matrix<Scalar> G(Y.rows(), Y.cols());
  energy.gradient(Y, G);

  Matrix<Scalar> fd(Y.rows(), Y.cols());
  Matrix<Scalar> X = Y;
  for (Eigen::Index j = 0; j < Y.cols(); ++j)
    for (Eigen::Index i = 0; i < Y.rows(); ++i) {
      const Scalar h = base_step * std::max(Scalar(1), std::abs(Y(i, j)));
      X(i, j) = Y(i, j) + h;
      const Scalar up = energy.value(X);
      X(i, j) = Y(i, j) - h;
      const Scalar down = energy.value(X);
      X(i, j) = Y(i, j);
      fd(i, j) = (up - down) / (Scalar(2) * h);
    }

  GradientCheck<Scalar> result;
  const Matrix<Scalar> gap = (G - fd).cwiseAbs();
  result.absolute_error = gap.maxCoeff(&result.row, &result.col);
  const Scalar scale = std::max({G.cwiseAbs().maxCoeff(), fd.cwiseAbs().maxCoeff(),
                                 std::numeric_limits<Scalar>::min()});
  result.relative_error = result.absolute_error / scale;
  result.worst_ratio = (gap.array() / (atol + rtol * fd.array().abs())).maxCoeff();
  return result;
}

}  // namespace unfold::check
