#pragma once

/// \file
/// The two energies of CRATE (Yu et al. 2023; MATH.md section 6): the coding rate of the tokens
/// projected on subspaces (compression) and a sparse-coding energy over a code X.

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unfold {

/// Compression term of CRATE, for tokens Z (n x d, one per row) and K subspaces with
/// orthonormal bases U_k (d x p_k, U_k^T U_k = I):
///
///     R_c(Z) = sum_k 0.5 logdet(I_{p_k} + a_k W_k^T W_k),   W_k = Z U_k (n x p_k),
///     a_k = p_k / (n eps^2),
///
/// the coding rate, at quantisation precision eps, of the tokens' coordinates in each
/// subspace. Yu et al. write it with tokens as columns, 0.5 logdet(I_n + a (U^T Z)^T (U^T Z));
/// both determinants are equal (Sylvester), and this one is p x p. The constant a_k depends on
/// the number of tokens n of the argument, as in the paper.
///
///     grad R_c(Z) = sum_k a_k W_k (I + a_k W_k^T W_k)^{-1} U_k^T.
///
/// Its curvature is bounded above: along any V, d^2/dt^2 R_c(Z + t V) <= sum_k a_k ||V U_k||^2
/// <= lipschitz(n) ||V||^2 with lipschitz(n) = lambda_max(sum_k p_k U_k U_k^T) / (n eps^2), so a
/// gradient step of size <= 2 / lipschitz(n) does not raise R_c (the descent lemma needs only
/// the upper bound). For mutually orthogonal subspaces of equal width p it is p / (n eps^2).
///
/// \tparam Scalar_ float or double.
template <Real Scalar_>
class CodingRateEnergy {
public:
  using Scalar = Scalar_;

  /// \param bases U_k, each d x p_k with 1 <= p_k <= d and orthonormal columns (to
  ///        sqrt(machine epsilon)), all of the same d; at least one.
  /// \param eps quantisation precision, finite and > 0.
  CodingRateEnergy(std::vector<Matrix<Scalar>> bases, Scalar eps)
      : U_(std::move(bases)), eps_(eps)
  {
    constexpr std::string_view who = "CodingRateEnergy";
    if (U_.empty())
      detail::fail(who, "bases is empty, expected at least one subspace");
    detail::require_positive(who, "eps", eps_);
    const Eigen::Index d = U_.front().rows();
    const Scalar tol = std::sqrt(std::numeric_limits<Scalar>::epsilon());
    Matrix<Scalar> weighted = Matrix<Scalar>::Zero(d, d);
    for (std::size_t k = 0; k < U_.size(); ++k) {
      const std::string arg = "bases[" + std::to_string(k) + "]";
      detail::require_nonempty(who, arg, U_[k]);
      detail::require_rows(who, arg, U_[k], d, "d");
      detail::require_finite(who, arg, U_[k]);
      const Eigen::Index p = U_[k].cols();
      const Matrix<Scalar> gram = U_[k].transpose() * U_[k];
      const Scalar gap = (gram - Matrix<Scalar>::Identity(p, p)).cwiseAbs().maxCoeff();
      if (gap > tol)
        detail::fail(who, arg + " (" + detail::shape_of(U_[k]) +
                              ") does not have orthonormal columns: max |U^T U - I| = " +
                              std::to_string(gap));
      weighted.noalias() += Scalar(p) * U_[k] * U_[k].transpose();
    }
    const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eigen(weighted, Eigen::EigenvaluesOnly);
    curvature_ = eigen.eigenvalues().maxCoeff();
  }

  static constexpr std::string_view name() { return "coding_rate"; }

  Eigen::Index dim() const { return U_.front().rows(); }
  std::size_t subspaces() const { return U_.size(); }
  const std::vector<Matrix<Scalar>>& bases() const { return U_; }
  Scalar eps() const { return eps_; }

  /// a_k = p_k / (n eps^2) for n tokens.
  Scalar scale(std::size_t k, Eigen::Index n) const
  {
    return Scalar(U_.at(k).cols()) / (Scalar(n) * eps_ * eps_);
  }

  /// Upper bound on the curvature of R_c for n tokens: lambda_max(sum p_k U_k U_k^T)/(n eps^2).
  Scalar lipschitz(Eigen::Index n) const { return curvature_ / (Scalar(n) * eps_ * eps_); }

  /// R_c at Z (n x d).
  Scalar value(const ConstMatrixRef<Scalar>& Z) const
  {
    detail::require_tokens("CodingRateEnergy::value", Z, dim());
    return evaluate(Z, nullptr, nullptr);
  }

  /// The terms 0.5 logdet(I + a_k W_k^T W_k), one per subspace, at Z (n x d).
  std::vector<Scalar> per_subspace(const ConstMatrixRef<Scalar>& Z) const
  {
    detail::require_tokens("CodingRateEnergy::per_subspace", Z, dim());
    std::vector<Scalar> terms;
    evaluate(Z, nullptr, &terms);
    return terms;
  }

  /// Writes grad R_c at Z into G (n x d).
  void gradient(const ConstMatrixRef<Scalar>& Z, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Z, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Z, MatrixRef<Scalar> G) const
  {
    constexpr std::string_view who = "CodingRateEnergy::value_and_gradient";
    detail::require_tokens(who, Z, dim());
    detail::require_shape(who, "G", G, Z.rows(), Z.cols());
    Matrix<Scalar> gradient(Z.rows(), Z.cols());
    const Scalar rate = evaluate(Z, &gradient, nullptr);
    G = gradient;
    return rate;
  }

private:
  Scalar evaluate(const ConstMatrixRef<Scalar>& Z, Matrix<Scalar>* G,
                  std::vector<Scalar>* terms) const
  {
    if (G)
      G->setZero();
    Scalar rate = 0;
    for (std::size_t k = 0; k < U_.size(); ++k) {
      // A = I + a W^T W (p x p, SPD, >= I); logdet A = 2 sum log diag(L), A = L L^T.
      const Scalar a = scale(k, Z.rows());
      const Matrix<Scalar> W = Z * U_[k];
      Matrix<Scalar> A = Matrix<Scalar>::Identity(W.cols(), W.cols());
      A.template selfadjointView<Eigen::Lower>().rankUpdate(W.transpose(), a);
      const Eigen::LLT<Matrix<Scalar>> llt(A);
      const Scalar term = llt.matrixLLT().diagonal().array().log().sum();
      rate += term;
      if (terms)
        terms->push_back(term);

      // a W A^{-1} U^T: solve A X = W^T (p x n), then X^T U^T.
      if (G) {
        const Matrix<Scalar> X = llt.solve(W.transpose());
        G->noalias() += a * X.transpose() * U_[k].transpose();
      }
    }
    return rate;
  }

  std::vector<Matrix<Scalar>> U_;
  Scalar eps_;
  Scalar curvature_ = 0;
};

/// Sparse-coding energy of CRATE over a code X (n x m), for a fixed signal Z (n x d) and a
/// dictionary D (m x d; CRATE's is square, m = d), tokens as rows:
///
///     F(X) = lambda ||X||_1 + 0.5 ||Z - X D||_F^2  [+ indicator(X >= 0)],
///
/// the indicator present when `nonnegative` (CRATE's non-negative lasso, whose proximal step
/// is a shifted ReLU). The smooth part has gradient (X D - Z) D^T and Lipschitz constant
/// ||D||_2^2 = lipschitz().
///
/// `gradient` writes (X D - Z) D^T + lambda sign(X) with sign(0) = 0: the gradient wherever X
/// has no zero entry, and a subgradient everywhere on the feasible set. With lambda = 0 and
/// nonnegative = false the energy is the smooth part alone.
template <Real Scalar_>
class SparseCodingEnergy {
public:
  using Scalar = Scalar_;

  /// \param dictionary D, m x d, finite. \param lambda sparsity weight, >= 0.
  /// \param signal Z, n x d, finite. \param nonnegative add the indicator of X >= 0.
  SparseCodingEnergy(Matrix<Scalar> dictionary, Scalar lambda, Matrix<Scalar> signal,
                     bool nonnegative = true)
      : D_(std::move(dictionary)), Z_(std::move(signal)), lambda_(lambda),
        nonnegative_(nonnegative)
  {
    constexpr std::string_view who = "SparseCodingEnergy";
    detail::require_nonempty(who, "D", D_);
    detail::require_finite(who, "D", D_);
    detail::require_nonnegative(who, "lambda", lambda_);
    detail::require_nonempty(who, "Z", Z_);
    detail::require_cols(who, "Z", Z_, D_.cols(), "the dictionary's width");
    detail::require_finite(who, "Z", Z_);
    const Matrix<Scalar> DDt = D_ * D_.transpose();
    const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eigen(DDt, Eigen::EigenvaluesOnly);
    lipschitz_ = std::max(Scalar(0), eigen.eigenvalues().maxCoeff());
  }

  static constexpr std::string_view name() { return "sparse_coding"; }

  /// The code width m (the columns of X).
  Eigen::Index dim() const { return D_.rows(); }
  Eigen::Index tokens() const { return Z_.rows(); }
  const Matrix<Scalar>& dictionary() const { return D_; }
  const Matrix<Scalar>& signal() const { return Z_; }
  Scalar lambda() const { return lambda_; }
  bool nonnegative() const { return nonnegative_; }

  /// ||D||_2^2 = lambda_max(D D^T), the Lipschitz constant of the smooth part's gradient.
  Scalar lipschitz() const { return lipschitz_; }

  /// F at the code X (n x m); +infinity outside X >= 0 when nonnegative.
  Scalar value(const ConstMatrixRef<Scalar>& X) const
  {
    check(X, "value");
    if (nonnegative_ && (X.array() < Scalar(0)).any())
      return std::numeric_limits<Scalar>::infinity();
    return lambda_ * X.cwiseAbs().sum() + smooth(X);
  }

  /// 0.5 ||Z - X D||^2 alone.
  Scalar smooth_value(const ConstMatrixRef<Scalar>& X) const
  {
    check(X, "smooth_value");
    return smooth(X);
  }

  void gradient(const ConstMatrixRef<Scalar>& X, MatrixRef<Scalar> G) const
  {
    value_and_gradient(X, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& X, MatrixRef<Scalar> G) const
  {
    constexpr std::string_view who = "SparseCodingEnergy::value_and_gradient";
    check(X, "value_and_gradient");
    detail::require_shape(who, "G", G, X.rows(), X.cols());
    const Scalar energy = value(X);
    const Matrix<Scalar> residual = X * D_ - Z_;
    G.noalias() = residual * D_.transpose();
    G += lambda_ * X.unaryExpr([](Scalar t) {
      return t > Scalar(0) ? Scalar(1) : (t < Scalar(0) ? Scalar(-1) : Scalar(0));
    });
    return energy;
  }

  /// The proximal map of step * (lambda ||.||_1 [+ indicator(. >= 0)]) at V (n x m):
  /// max(0, V - step lambda) when nonnegative, soft thresholding otherwise. `out` may be V.
  void prox(const ConstMatrixRef<Scalar>& V, Scalar step, MatrixRef<Scalar> out) const
  {
    detail::require_shape("SparseCodingEnergy::prox", "out", out, V.rows(), V.cols());
    const Scalar t = step * lambda_;
    if (nonnegative_)
      out = (V.array() - t).cwiseMax(Scalar(0)).matrix();
    else
      out = V.unaryExpr([t](Scalar v) {
        return v > t ? v - t : (v < -t ? v + t : Scalar(0));
      });
  }

private:
  void check(const ConstMatrixRef<Scalar>& X, std::string_view method) const
  {
    std::string who = "SparseCodingEnergy::";
    who += method;
    detail::require_tokens(who, X, dim());
    detail::require_rows(who, "Y", X, Z_.rows(), "n");
  }

  Scalar smooth(const ConstMatrixRef<Scalar>& X) const
  {
    return Scalar(0.5) * (Z_ - X * D_).squaredNorm();
  }

  Matrix<Scalar> D_;
  Matrix<Scalar> Z_;
  Scalar lambda_;
  bool nonnegative_;
  Scalar lipschitz_ = 0;
};

/// The fraction of entries of Z that are exactly zero (0 for an empty matrix): the sparsity
/// CRATE reports after its ISTA block.
template <class Derived>
  requires Real<typename Derived::Scalar>
typename Derived::Scalar sparsity(const Eigen::MatrixBase<Derived>& Z)
{
  using Scalar = typename Derived::Scalar;
  if (Z.size() == 0)
    return Scalar(0);
  return Scalar((Z.array() == Scalar(0)).count()) / Scalar(Z.size());
}

}  // namespace unfold
