#pragma once

/// \file
/// A central-difference gradient checker for any Energy.

#include "../core/concepts.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace unfold::check {

template <Real Scalar>
struct GradientCheck {
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
/// Also checks that value_and_gradient agrees with value and gradient.
template <Energy E>
GradientCheck<typename E::Scalar> gradient_check(const E& energy,
                                                 const Matrix<typename E::Scalar>& Y)
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
  return result;
}

}  // namespace unfold::check
