#pragma once

/// \file
/// The indicator of the non-negative orthant, whose proximal map is ReLU.

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <limits>
#include <string_view>

namespace unfold {

/// i(Y) = 0 if every entry of Y is >= 0, +infinity otherwise.
///
/// Its proximal map, for any step size, is the projection `max(0, Y)`: ReLU. It is not
/// differentiable; `gradient` writes the zero subgradient, valid at every feasible point, so
/// that a sum of energies that includes it still models Energy on the feasible set.
template <Real Scalar_>
class NonNegativeIndicator {
public:
  using Scalar = Scalar_;

  explicit NonNegativeIndicator(Eigen::Index d) : d_(d)
  {
    if (d < 1)
      detail::fail("NonNegativeIndicator", "d = " + std::to_string(d) + ", expected d >= 1");
  }

  static constexpr std::string_view name() { return "nonnegative"; }

  Eigen::Index dim() const { return d_; }

  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("NonNegativeIndicator::value", Y, d_);
    return (Y.array() >= Scalar(0)).all() ? Scalar(0) : std::numeric_limits<Scalar>::infinity();
  }

  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    detail::require_shape("NonNegativeIndicator::value_and_gradient", "G", G, Y.rows(),
                          Y.cols());
    const Scalar v = value(Y);
    G.setZero();
    return v;
  }

  /// prox(Y) = argmin_X i(X) + 0.5 ||X - Y||^2 = max(0, Y); `out` may be `Y` itself.
  void prox(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> out) const
  {
    detail::require_shape("NonNegativeIndicator::prox", "out", out, Y.rows(), Y.cols());
    out = Y.cwiseMax(Scalar(0));
  }

private:
  Eigen::Index d_;
};

}  // namespace unfold
