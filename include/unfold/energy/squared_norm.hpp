#pragma once

/// \file
/// The squared Frobenius norm, with its proximal map.

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <string_view>

namespace unfold {

/// R(Y) = (lambda / 2) ||Y||_F^2, lambda >= 0.
///
/// Its proximal map with step size eta is argmin_X R(X) + ||X - Y||^2 / (2 eta)
/// = Y / (1 + eta lambda): a shrink towards 0 that never overshoots, unlike the gradient step
/// Y - eta lambda Y, which flips the sign of Y once eta lambda > 1.
template <Real Scalar_>
class SquaredNormEnergy {
public:
  using Scalar = Scalar_;

  SquaredNormEnergy(Eigen::Index d, Scalar lambda) : d_(d), lambda_(lambda)
  {
    if (d < 1)
      detail::fail("SquaredNormEnergy", "d = " + std::to_string(d) + ", expected d >= 1");
    detail::require_nonnegative("SquaredNormEnergy", "lambda", lambda_);
  }

  static constexpr std::string_view name() { return "squared_norm"; }
  Eigen::Index dim() const { return d_; }
  Scalar lambda() const { return lambda_; }

  /// lambda, the Lipschitz constant of the gradient (exact).
  Scalar lipschitz() const { return lambda_; }

  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("SquaredNormEnergy::value", Y, d_);
    return Scalar(0.5) * lambda_ * Y.squaredNorm();
  }

  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    detail::require_shape("SquaredNormEnergy::value_and_gradient", "G", G, Y.rows(), Y.cols());
    const Scalar v = value(Y);
    G = lambda_ * Y;
    return v;
  }

  /// prox_{eta R}(Y) = Y / (1 + eta lambda); `out` may be `Y` itself.
  void prox(const ConstMatrixRef<Scalar>& Y, Scalar step_size, MatrixRef<Scalar> out) const
  {
    detail::require_positive("SquaredNormEnergy::prox", "step_size", step_size);
    detail::require_shape("SquaredNormEnergy::prox", "out", out, Y.rows(), Y.cols());
    out = Y / (Scalar(1) + step_size * lambda_);
  }

private:
  Eigen::Index d_;
  Scalar lambda_;
};

}  // namespace unfold
