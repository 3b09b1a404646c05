#pragma once

/// \file
/// The causal pairwise energy: every token interacts only with the tokens before it.

#include "attention.hpp"

#include <limits>
#include <string_view>

namespace unfold {

/// Per-token causal energies E_i(y_i | y_<i) = sum_{j<i} rho(0.5 ||(y_i - y_j) P||^2)
/// + (lambda/2) ||y_i P||^2, the energy token i descends with the earlier tokens held fixed.
///
/// Their sum, `value(Y)`, is the same function of Y as the pairwise AttentionEnergy (every
/// unordered pair has an earlier and a later token), and `gradient` is its true gradient, so
/// the class models Energy. What is causal is the step (causal_mm_step): token i moves on its
/// own E_i given the past only, so no token depends on the tokens after it. The descent
/// statement is per token: E_i(y_i+ | y_<i) <= E_i(y_i | y_<i), see `token_energies_given`.
template <Real Scalar_, class Kernel_ = ExpKernel>
class CausalAttentionEnergy {
public:
  using Scalar = Scalar_;
  using Kernel = Kernel_;

  explicit CausalAttentionEnergy(Matrix<Scalar> P, Scalar lambda = Scalar(0))
      : pairwise_(std::move(P), lambda)
  {
  }

  static constexpr std::string_view name() { return "causal_attention"; }

  Eigen::Index dim() const { return pairwise_.dim(); }
  const Matrix<Scalar>& factor() const { return pairwise_.factor(); }
  Scalar lambda() const { return pairwise_.lambda(); }
  const AttentionEnergy<Scalar, Kernel>& pairwise() const { return pairwise_; }

  Scalar value(const ConstMatrixRef<Scalar>& Y) const { return pairwise_.value(Y); }

  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    pairwise_.gradient(Y, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    return pairwise_.value_and_gradient(Y, G);
  }

  /// E_i(y_i | y_<i) for every token i of Y (n).
  Vector<Scalar> token_energies(const ConstMatrixRef<Scalar>& Y) const
  {
    return token_energies_given(Y, Y);
  }

  /// E_i(x_i | y_<i): token i of X against the earlier tokens of Y (both n x d), for every i.
  Vector<Scalar> token_energies_given(const ConstMatrixRef<Scalar>& X,
                                      const ConstMatrixRef<Scalar>& Y) const
  {
    constexpr std::string_view who = "CausalAttentionEnergy::token_energies_given";
    detail::require_tokens(who, Y, dim());
    detail::require_shape(who, "X", X, Y.rows(), Y.cols());
    detail::require_finite(who, "X", X);

    const Matrix<Scalar> ZX = X * factor();
    const Matrix<Scalar> ZY = Y * factor();
    Vector<Scalar> energies(X.rows());
    for (Eigen::Index i = 0; i < X.rows(); ++i) {
      Scalar e = Scalar(0.5) * lambda() * ZX.row(i).squaredNorm();
      for (Eigen::Index j = 0; j < i; ++j)
        e += Kernel::rho(Scalar(0.5) * (ZX.row(i) - ZY.row(j)).squaredNorm());
      energies(i) = e;
    }
    return energies;
  }

private:
  AttentionEnergy<Scalar, Kernel> pairwise_;
};

}  // namespace unfold
