#pragma once

/// \file
/// The pairwise attention energy (MATH.md section 1).

#include "../core/types.hpp"
#include "../core/validate.hpp"
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
template <Real Scalar_, class Kernel_ = ExpKernel>
class AttentionEnergy {
public:
  using Scalar = Scalar_;
  using Kernel = Kernel_;

  /// \param P metric factor, d x k, finite.
  /// \param lambda weight of the norm term, >= 0.
  explicit AttentionEnergy(Matrix<Scalar> P, Scalar lambda = Scalar(0))
      : P_(std::move(P)), lambda_(lambda)
  {
    constexpr std::string_view who = "AttentionEnergy";
    detail::require_nonempty(who, "P", P_);
    detail::require_finite(who, "P", P_);
    detail::require_nonnegative(who, "lambda", lambda_);
  }

  static constexpr std::string_view name() { return "attention"; }

  Eigen::Index dim() const { return P_.rows(); }
  Eigen::Index rank() const { return P_.cols(); }
  const Matrix<Scalar>& factor() const { return P_; }
  Scalar lambda() const { return lambda_; }

  /// The metric M = P P^T (d x d).
  Matrix<Scalar> metric() const { return P_ * P_.transpose(); }

  /// The energy at Y (n x d).
  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    check(Y, "value");
    Matrix<Scalar> Z, S;
    Vector<Scalar> q;
    return evaluate(Y, Z, S, q);
  }

  /// Writes dE/dY at Y into G (n x d).
  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  /// The energy at Y; writes dE/dY into G (n x d). One Gram matrix serves both.
  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    check(Y, "value_and_gradient");
    detail::require_shape("AttentionEnergy::value_and_gradient", "G", G, Y.rows(), Y.cols());

    Matrix<Scalar> Z, S;
    Vector<Scalar> q;
    const Scalar energy = evaluate(Y, Z, S, q);

    // S becomes the weights beta_ij off the diagonal, D their row sums.
    const Eigen::Index n = Y.rows();
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index i = 0; i < n; ++i)
        S(i, j) = i == j ? Scalar(0) : Kernel::derivative(S(i, j));
    const Vector<Scalar> D = S.rowwise().sum();

    // (L + lambda I) Z = (D + lambda) .* Z - B_off Z, then back to tokens through P^T.
    Matrix<Scalar> LZ = (D.array() + lambda_).matrix().asDiagonal() * Z;
    LZ.noalias() -= S * Z;
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

  Scalar evaluate(const ConstMatrixRef<Scalar>& Y, Matrix<Scalar>& Z, Matrix<Scalar>& S,
                  Vector<Scalar>& q) const
  {
    Z.noalias() = Y * P_;
    detail::half_square_distances(Z, S, q);

    Scalar pairs = 0;
    const Eigen::Index n = Y.rows();
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index i = j + 1; i < n; ++i)
        pairs += Kernel::rho(S(i, j));
    return pairs + Scalar(0.5) * lambda_ * q.sum();
  }

  Matrix<Scalar> P_;
  Scalar lambda_;
};

}  // namespace unfold
