#pragma once

/// \file
/// The feed-forward energy (MATH.md section 2).

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <Eigen/Eigenvalues>

#include <string_view>

namespace unfold {

/// Quadratic feed-forward energy
///
///     E(Y) = 0.5 tr(Y S Y^T) + 0.5 ||Y - 1 b||_F^2,      grad E(Y) = Y S + Y - 1 b,
///
/// with S symmetric (d x d) and b a row (1 x d). Its gradient step with step size alpha is
/// the linear layer `Y ((1 - alpha) I - alpha S) + alpha 1 b`.
///
/// Only the symmetric part of S enters the energy; the constructor nevertheless rejects a
/// non-symmetric S, because the step's weight `(1 - alpha) I - alpha S` would then be the
/// gradient step of a different energy.
template <Real Scalar_>
class FeedForwardEnergy {
public:
  using Scalar = Scalar_;

  /// \param S symmetric d x d, finite.
  /// \param b bias row, 1 x d, finite.
  FeedForwardEnergy(Matrix<Scalar> S, RowVector<Scalar> b) : S_(std::move(S)), b_(std::move(b))
  {
    constexpr std::string_view who = "FeedForwardEnergy";
    detail::require_nonempty(who, "S", S_);
    detail::require_finite(who, "S", S_);
    detail::require_symmetric(who, "S", S_);
    detail::require_shape(who, "b", b_, 1, S_.rows());
    detail::require_finite(who, "b", b_);

    const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eigen(S_, Eigen::EigenvaluesOnly);
    lipschitz_ = std::max(Scalar(0), eigen.eigenvalues().maxCoeff() + Scalar(1));
    convexity_ = eigen.eigenvalues().minCoeff() + Scalar(1);
  }

  static constexpr std::string_view name() { return "feedforward"; }

  Eigen::Index dim() const { return S_.rows(); }
  const Matrix<Scalar>& weight() const { return S_; }
  const RowVector<Scalar>& bias() const { return b_; }

  /// lambda_max(S + I), clipped at 0: the Lipschitz constant of the gradient when S + I is
  /// positive semi-definite. Computed by an exact symmetric eigensolver, not estimated.
  Scalar lipschitz() const { return lipschitz_; }

  /// lambda_min(S + I): the energy is strongly convex with this modulus when it is > 0.
  Scalar strong_convexity() const { return convexity_; }

  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("FeedForwardEnergy::value", Y, dim());
    const Matrix<Scalar> YS = Y * S_;
    return Scalar(0.5) * (YS.cwiseProduct(Y).sum() + (Y.rowwise() - b_).squaredNorm());
  }

  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    constexpr std::string_view who = "FeedForwardEnergy::value_and_gradient";
    detail::require_tokens(who, Y, dim());
    detail::require_shape(who, "G", G, Y.rows(), Y.cols());

    // G first holds Y S, so that the quadratic term reuses it; G must not alias Y.
    G.noalias() = Y * S_;
    const Scalar quadratic = G.cwiseProduct(Y).sum();
    const Scalar residual = (Y.rowwise() - b_).squaredNorm();
    G += Y;
    G.rowwise() -= b_;
    return Scalar(0.5) * (quadratic + residual);
  }

private:
  Matrix<Scalar> S_;
  RowVector<Scalar> b_;
  Scalar lipschitz_ = 0;
  Scalar convexity_ = 0;
};

}  // namespace unfold
