#pragma once

/// \file
/// The pairwise attention energy (MATH.md section 1).

#include "../core/types.hpp"
#include "../core/validate.hpp"
#include "attention_kernel.hpp"
#include "kernels.hpp"

#include <algorithm>
#include <string_view>

namespace unfold {

namespace detail {

/// Half squared distances s_ij = 0.5 ||z_i - z_j||^2 of the rows of Z (n x k), from the Gram
/// matrix: s_ij = 0.5 (q_i + q_j) - z_i.z_j, clamped at 0 against rounding; s_ii = 0.
/// Writes the squared norms q (n) on the way. Never forms the n^2 x k pair differences.
template <class Scalar>
void half_square_distances(const Matrix<Scalar>& Z, Matrix<Scalar>& S, Vector<Scalar>& q)
{
  const Eigen::Index n = Z.rows();

  S.resize(n, n);
  S.setZero();
  S.template selfadjointView<Eigen::Lower>().rankUpdate(Z, Scalar(-1));
  q = -S.diagonal();

  for (Eigen::Index j = 0; j < n; ++j) {
    S(j, j) = Scalar(0);
    for (Eigen::Index i = j + 1; i < n; ++i) {
      const Scalar s = std::max(Scalar(0), Scalar(0.5) * (q(i) + q(j)) + S(i, j));
      S(i, j) = s;
      S(j, i) = s;
    }
  }
}

/// The energy from the pair sum of a pass and the metric coordinates it ran on; the steps that
/// compute the pair sum as a by-product report the energy at their input through this.
template <class Scalar>
Scalar attention_energy_from_pairs(Scalar lambda, double pairs, const MetricCoordinates<Scalar>& mc)
{
  return Scalar(pairs) + Scalar(0.5) * lambda * mc.norm2;
}

}  // namespace detail

/// Pairwise attention energy
///
///     E(Y) = sum_{i<j} rho(0.5 ||z_i - z_j||^2) + (lambda / 2) ||Z||_F^2,    Z = Y P,
///
/// over unordered pairs of tokens (each pair counted once).
///
/// \tparam Scalar float or double.
/// \tparam Kernel a concave kernel policy (ExpKernel, LogKernel, RationalKernel).
///
/// `P` is the d x k metric factor (k need not equal d), `M = P P^T` the metric. The gradient is
/// `(L + lambda I) Y M` with the weighted graph Laplacian `L` of the weights
/// `beta_ij = rho'(s_ij)`.
///
/// The value, the gradient and the MM steps on this energy run on the path its
/// AttentionPolicy chooses: dense (one n x n matrix) up to `policy.dense_max_n` tokens,
/// streamed (tiles of `policy.block` tokens, memory linear in n) above; either can be forced.
/// Both compute the squared distances from the Gram matrix of the centred metric coordinates,
/// never from the n^2 x k pair differences, and visit each unordered pair once.
template <Real Scalar_, class Kernel_ = ExpKernel>
class AttentionEnergy {
public:
  using Scalar = Scalar_;
  using Kernel = Kernel_;

  /// \param P metric factor, d x k, finite.
  /// \param lambda weight of the norm term, >= 0.
  /// \param policy dense or streamed evaluation (default: by size).
  explicit AttentionEnergy(Matrix<Scalar> P, Scalar lambda = Scalar(0),
                           AttentionPolicy policy = {})
      : P_(std::move(P)), lambda_(lambda), policy_(policy)
  {
    constexpr std::string_view who = "AttentionEnergy";
    detail::require_nonempty(who, "P", P_);
    detail::require_finite(who, "P", P_);
    detail::require_nonnegative(who, "lambda", lambda_);
    policy_.validate(who);
  }

  static constexpr std::string_view name() { return "attention"; }

  Eigen::Index dim() const { return P_.rows(); }
  Eigen::Index rank() const { return P_.cols(); }
  const Matrix<Scalar>& factor() const { return P_; }
  Scalar lambda() const { return lambda_; }
  const AttentionPolicy& policy() const { return policy_; }

  /// The same energy evaluated on another path.
  AttentionEnergy with_policy(AttentionPolicy policy) const
  {
    policy.validate("AttentionEnergy::with_policy");
    AttentionEnergy copy = *this;
    copy.policy_ = policy;
    return copy;
  }

  /// The metric M = P P^T (d x d).
  Matrix<Scalar> metric() const { return P_ * P_.transpose(); }

  /// The energy at Y (n x d).
  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    check(Y, "value");
    detail::MetricCoordinates<Scalar> mc;
    detail::metric_coordinates(Y, P_, mc);
    Matrix<Scalar> unused;
    return total(detail::pair_pass<Kernel>(mc, policy_.tile(Y.rows()), nullptr, Scalar(0),
                                           unused),
                 mc);
  }

  /// Writes dE/dY at Y into G (n x d).
  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  /// The energy at Y; writes dE/dY into G (n x d). One pass over the pairs serves both: each
  /// tile of the Gram matrix becomes weights, adds to the pair sum, and is multiplied by the
  /// metric coordinates.
  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    check(Y, "value_and_gradient");
    detail::require_shape("AttentionEnergy::value_and_gradient", "G", G, Y.rows(), Y.cols());

    detail::MetricCoordinates<Scalar> mc;
    detail::metric_coordinates(Y, P_, mc);
    const Eigen::Index k = rank();

    // [B_off Zc | D] = B_off [Zc | 1], B_off the weights with a zero diagonal (n x (k + 1)).
    const Matrix<Scalar> mix = detail::with_ones_column(mc.centred);
    Matrix<Scalar> out;
    const Scalar energy = total(
        detail::pair_pass<Kernel>(mc, policy_.tile(Y.rows()), &mix, Scalar(0), out), mc);

    // (L + lambda I) Z = D .* Zc - B_off Zc + lambda Z (L annihilates the centring), then back
    // to tokens through P^T.
    Matrix<Scalar> LZ = out.col(k).asDiagonal() * mc.centred;
    LZ -= out.leftCols(k);
    if (lambda_ > Scalar(0)) {
      LZ += lambda_ * mc.centred;
      LZ.rowwise() += lambda_ * mc.mean;
    }
    G.noalias() = LZ * P_.transpose();
    return energy;
  }

private:
  void check(const ConstMatrixRef<Scalar>& Y, std::string_view method) const
  {
    std::string who = "AttentionEnergy::";
    who += method;
    detail::require_tokens(who, Y, dim());
  }

  Scalar total(double pairs, const detail::MetricCoordinates<Scalar>& mc) const
  {
    return detail::attention_energy_from_pairs(lambda_, pairs, mc);
  }

  Matrix<Scalar> P_;
  Scalar lambda_;
  AttentionPolicy policy_;
};

}  // namespace unfold
