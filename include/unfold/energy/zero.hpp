#pragma once

/// \file
/// The zero energy, for steps that descend nothing of their own.

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <string>
#include <string_view>

namespace unfold {

/// E(Y) = 0. A projection step (layer norm) names it as its energy, so that a layer's trace
/// shows the other components after the projection, and so whether the projection raised
/// their sum.
template <Real Scalar_>
class ZeroEnergy {
public:
  using Scalar = Scalar_;

  explicit ZeroEnergy(Eigen::Index d) : d_(d)
  {
    if (d < 1)
      detail::fail("ZeroEnergy", "d = " + std::to_string(d) + ", expected d >= 1");
  }

  static constexpr std::string_view name() { return "projection"; }
  Eigen::Index dim() const { return d_; }

  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("ZeroEnergy::value", Y, d_);
    return Scalar(0);
  }

  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    detail::require_shape("ZeroEnergy::value_and_gradient", "G", G, Y.rows(), Y.cols());
    G.setZero();
    return value(Y);
  }

private:
  Eigen::Index d_;
};

}  // namespace unfold
