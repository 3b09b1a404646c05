#pragma once

/// \file
/// The modern Hopfield energy (Ramsauer et al. 2020; MATH.md section 6), one state per token.

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <algorithm>
#include <cmath>
#include <string_view>
#include <type_traits>

namespace unfold {

namespace detail {

/// log((1/N) sum_mu exp(s_mu)) of the N entries of `s`, with m = max s, as
/// m + log1p(mean(expm1(s - m))). The max subtraction keeps exp from overflowing; expm1 and
/// log1p keep the digits when all s_mu are close, so that the result divided by a small
/// inverse temperature stays accurate. `s` is overwritten with the softmax weights.
template <class VectorLike>
auto log_mean_exp_and_softmax(VectorLike&& s)
{
  using Scalar = typename std::remove_cvref_t<VectorLike>::Scalar;
  const Scalar top = s.maxCoeff();
  s = (s.array() - top).matrix();
  const Scalar mean_expm1 = s.unaryExpr([](Scalar t) { return std::expm1(t); }).mean();
  s = s.array().exp().matrix();
  s /= s.sum();
  return top + std::log1p(mean_expm1);
}

}  // namespace detail

/// Modern Hopfield energy of stored patterns X (N x d) at inverse temperature beta > 0,
/// summed over the rows xi of Y (n x d), each row an independent state:
///
///     E(Y) = sum_rows [ -(1/beta) log sum_mu exp(beta x_mu . xi) + 0.5 xi . xi
///                       + (1/beta) log N + 0.5 M^2 ],        M = max_mu ||x_mu||.
///
/// The two constants are Ramsauer et al.'s: with them every row contributes a value in
/// [0, 2 M^2] when ||xi|| <= M, and E >= 0 everywhere, because
/// -(1/beta) log((1/N) sum exp(beta x.xi)) >= -M ||xi|| and 0.5 (||xi|| - M)^2 >= 0. The
/// first and third terms are computed together as -(1/beta) log((1/N) sum exp(.)), so the
/// constant log N / beta cancels exactly rather than in rounding.
///
///     grad E(Y) = Y - softmax_rows(beta Y X^T) X,
///
/// and the retrieval X^T softmax(beta X xi) of each row is its concave-convex (CCCP) update,
/// cross-attention with keys = values = X (step/hopfield.hpp).
///
/// \tparam Scalar_ float or double.
template <Real Scalar_>
class HopfieldEnergy {
public:
  using Scalar = Scalar_;

  /// \param patterns stored patterns X, N x d (one per row), finite, N >= 1.
  /// \param beta inverse temperature, finite and > 0.
  HopfieldEnergy(Matrix<Scalar> patterns, Scalar beta) : X_(std::move(patterns)), beta_(beta)
  {
    constexpr std::string_view who = "HopfieldEnergy";
    detail::require_nonempty(who, "X", X_);
    detail::require_finite(who, "X", X_);
    detail::require_positive(who, "beta", beta_);
    max_norm_ = X_.rowwise().norm().maxCoeff();
  }

  static constexpr std::string_view name() { return "hopfield"; }

  Eigen::Index dim() const { return X_.cols(); }
  const Matrix<Scalar>& patterns() const { return X_; }
  Scalar beta() const { return beta_; }

  /// M = max_mu ||x_mu||, the largest pattern norm.
  Scalar max_norm() const { return max_norm_; }

  /// The constant each row carries: (1/beta) log N + 0.5 M^2.
  Scalar constant() const
  {
    return std::log(Scalar(X_.rows())) / beta_ + Scalar(0.5) * max_norm_ * max_norm_;
  }

  /// The energy at Y (n x d).
  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("HopfieldEnergy::value", Y, dim());
    Matrix<Scalar> target;
    return evaluate(Y, target);
  }

  /// Writes dE/dY = Y - retrieve(Y) into G (n x d).
  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  /// The energy at Y; writes dE/dY into G (n x d).
  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    constexpr std::string_view who = "HopfieldEnergy::value_and_gradient";
    detail::require_tokens(who, Y, dim());
    detail::require_shape(who, "G", G, Y.rows(), Y.cols());
    Matrix<Scalar> target;
    const Scalar energy = evaluate(Y, target);
    G = Y - target;
    return energy;
  }

  /// The retrieval softmax_rows(beta Y X^T) X (n x d): each row's CCCP update, the minimiser of
  /// the convex majoriser of E at Y.
  Matrix<Scalar> retrieve(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("HopfieldEnergy::retrieve", Y, dim());
    Matrix<Scalar> target;
    evaluate(Y, target);
    return target;
  }

private:
  // The energy at Y, and the retrieval of every row into `target` (n x d).
  Scalar evaluate(const ConstMatrixRef<Scalar>& Y, Matrix<Scalar>& target) const
  {
    // Column i of `weights` (N x n) holds the logits beta X y_i, then their softmax.
    Matrix<Scalar> weights = beta_ * (X_ * Y.transpose());
    Scalar separation = 0;
    for (Eigen::Index i = 0; i < weights.cols(); ++i)
      separation += detail::log_mean_exp_and_softmax(weights.col(i));
    target.noalias() = weights.transpose() * X_;

    const Scalar rows = Scalar(Y.rows());
    return -separation / beta_ + Scalar(0.5) * Y.squaredNorm() +
           rows * Scalar(0.5) * max_norm_ * max_norm_;
  }

  Matrix<Scalar> X_;
  Scalar beta_;
  Scalar max_norm_ = 0;
};

}  // namespace unfold
