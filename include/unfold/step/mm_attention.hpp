#pragma once

/// \file
/// The majorisation-minimisation (MM) attention steps on the pairwise energy (MATH.md 1.1).

#include "../energy/attention.hpp"
#include "descent_bound.hpp"
#include "detail_softmax.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

namespace unfold {

/// How the MM step visits the tokens.
enum class Sweep {
  jacobi,       ///< all tokens at once, weights from the current point
  gauss_seidel  ///< one token at a time, in order, weights recomputed after each
};

namespace detail {

/// Log-weights log rho'(s_ij) of every pair (diagonal: log rho'(0)), n x n and symmetric.
template <class Scalar, class Kernel>
void log_weights(const AttentionEnergy<Scalar, Kernel>& energy, const ConstMatrixRef<Scalar>& Y,
                 Matrix<Scalar>& logits)
{
  const Matrix<Scalar> Z = Y * energy.factor();
  Vector<Scalar> q;
  half_square_distances(Z, logits, q);
  logits = logits.unaryExpr([](Scalar s) { return Kernel::log_derivative(s); });
}

/// Off-diagonal weights scaled by 1 / (lambda + D_i) into column i, from log-weights, without
/// underflow: with m = max_j l_ij, w_ij = e^(l_ij - m) / (lambda e^(-m) + sum_j e^(l_ij - m)).
template <class VectorLike, class Scalar>
void damped_weights_in_place(VectorLike&& column, Eigen::Index self, Scalar lambda)
{
  column(self) = -std::numeric_limits<Scalar>::infinity();
  const Scalar top = column.maxCoeff();
  if (!std::isfinite(top)) {
    column.setZero();
    return;
  }
  column = (column.array() - top).exp().matrix();

  // lambda e^(-m) may overflow to +infinity (the weights are then 0, correctly), but must not
  // become 0 * infinity when lambda = 0.
  const Scalar damping = lambda > Scalar(0) ? lambda * std::exp(-top) : Scalar(0);
  column /= damping + column.sum();
}

}  // namespace detail

/// One Jacobi MM step on the pairwise attention energy, written into `Yout`.
///
/// With lambda = 0 it is the attention layer with key-norm-corrected softmax and residual
/// weight 1 - alpha:
///
///     Y+ = (1 - alpha) Y + alpha A Y,     A = diag(beta 1)^{-1} beta   (self term included),
///
/// which for ExpKernel is `A = row_softmax(Z Z^T - 0.5 * 1 q^T)`. With lambda > 0 it is
/// `Y+ = (1 - alpha) Y + alpha diag(1 / (lambda + D)) B_off Y` (MATH.md 1.1).
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar, class Kernel>
void mm_attention_step(const AttentionEnergy<Scalar, Kernel>& energy,
                       const ConstMatrixRef<Scalar>& Y, const StepParams<Scalar>& params,
                       MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "mm_attention_step";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  // Column i of `weights` holds the weights of query i (the log-weights are symmetric).
  Matrix<Scalar> weights;
  detail::log_weights(energy, Y, weights);
  if (energy.lambda() == Scalar(0))
    detail::softmax_columns_in_place(weights);
  else
    for (Eigen::Index i = 0; i < weights.cols(); ++i)
      detail::damped_weights_in_place(weights.col(i), i, energy.lambda());

  // The product is evaluated into a temporary, so Yout may alias Y.
  const Scalar alpha = params.step_size;
  Matrix<Scalar> mixed = weights.transpose() * Y;
  Yout = (Scalar(1) - alpha) * Y + alpha * mixed;
}

/// One Gauss-Seidel MM sweep: token i = 0, ..., n-1 in turn moves a fraction alpha of the way
/// to the minimiser of the majoriser in that token alone,
///
///     y_i <- (1 - alpha) y_i + alpha sum_{j != i} beta_ij y_j / (lambda + D_i),
///
/// with the weights recomputed from the tokens as updated so far. alpha = 1 is exact block
/// coordinate minimisation of the majoriser; every alpha in (0, 2] descends. With lambda = 0
/// and n = 1 a token has nothing to move towards and stays where it is.
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar, class Kernel>
void gauss_seidel_mm_step(const AttentionEnergy<Scalar, Kernel>& energy,
                          const ConstMatrixRef<Scalar>& Y, const StepParams<Scalar>& params,
                          MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "gauss_seidel_mm_step";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  const Eigen::Index n = Y.rows();
  const Scalar alpha = params.step_size;
  const Matrix<Scalar>& P = energy.factor();
  Matrix<Scalar> X = Y;
  Matrix<Scalar> Z = X * P;
  Vector<Scalar> q = Z.rowwise().squaredNorm();
  Vector<Scalar> w(n);

  for (Eigen::Index i = 0; i < n; ++i) {
    if (n == 1 && energy.lambda() == Scalar(0))
      break;

    // Log-weights of token i against every token as it stands now.
    w.noalias() = Z * Z.row(i).transpose();
    for (Eigen::Index j = 0; j < n; ++j) {
      const Scalar s = std::max(Scalar(0), Scalar(0.5) * (q(i) + q(j)) - w(j));
      w(j) = Kernel::log_derivative(s);
    }
    detail::damped_weights_in_place(w, i, energy.lambda());

    // Move token i, then refresh its metric coordinates for the tokens after it.
    const RowVector<Scalar> target = w.transpose() * X;
    X.row(i) = (Scalar(1) - alpha) * X.row(i) + alpha * target;
    Z.row(i).noalias() = X.row(i) * P;
    q(i) = Z.row(i).squaredNorm();
  }
  Yout = X;
}

/// The step-size bound MATH.md 1.1 proves for the Jacobi MM step at Y:
/// alpha <= 1 + rho'(0) / max_i D_i when lambda = 0, and
/// alpha <= 2 min_i (lambda + D_i) / (2 D_i + lambda) when lambda > 0.
template <Real Scalar, class Kernel>
DescentBound<Scalar> mm_attention_bound(const AttentionEnergy<Scalar, Kernel>& energy,
                                        const ConstMatrixRef<Scalar>& Y,
                                        const StepParams<Scalar>& params)
{
  constexpr std::string_view who = "mm_attention_bound";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());

  Matrix<Scalar> logits;
  detail::log_weights(energy, Y, logits);
  const Eigen::Index n = Y.rows();
  Vector<Scalar> D(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    Scalar sum = 0;
    for (Eigen::Index j = 0; j < n; ++j)
      if (j != i)
        sum += std::exp(logits(j, i));
    D(i) = sum;
  }

  DescentBound<Scalar> bound{params.step_size, 0, ""};
  const Scalar lambda = energy.lambda();
  const Scalar top = n > 1 ? D.maxCoeff() : Scalar(0);
  if (lambda == Scalar(0)) {
    bound.rule = "Jacobi MM, lambda = 0: alpha <= 1 + rho'(0) / max_i D_i";
    bound.max_step_size = top > Scalar(0) ? Scalar(1) + Kernel::derivative(Scalar(0)) / top
                                          : DescentBound<Scalar>::unbounded();
  } else {
    bound.rule = "Jacobi MM, lambda > 0: alpha <= 2 min_i (lambda + D_i) / (2 D_i + lambda)";
    const Vector<Scalar> ratio =
        (D.array() + lambda) / (Scalar(2) * D.array() + lambda);
    bound.max_step_size = Scalar(2) * ratio.minCoeff();
  }
  return bound;
}

/// The Gauss-Seidel MM sweep descends for every alpha in (0, 2] (MATH.md 1.1).
template <Real Scalar>
DescentBound<Scalar> gauss_seidel_bound(const StepParams<Scalar>& params)
{
  params.validate("gauss_seidel_bound");
  return {params.step_size, Scalar(2), "Gauss-Seidel MM: alpha <= 2"};
}

/// The MM attention step as an object for the unfolding operator: the energy it descends,
/// its step size and its sweep.
template <Real Scalar_, class Kernel = ExpKernel>
class MMAttentionStep {
public:
  using Scalar = Scalar_;
  using EnergyType = AttentionEnergy<Scalar, Kernel>;

  MMAttentionStep(EnergyType energy, StepParams<Scalar> params = {},
                  Sweep sweep = Sweep::jacobi)
      : energy_(std::move(energy)), params_(params), sweep_(sweep)
  {
    params_.validate("MMAttentionStep");
  }

  std::string_view name() const
  {
    return sweep_ == Sweep::jacobi ? "mm_attention" : "mm_attention_gauss_seidel";
  }
  const EnergyType& energy() const { return energy_; }
  const StepParams<Scalar>& params() const { return params_; }
  Sweep sweep() const { return sweep_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    if (sweep_ == Sweep::jacobi)
      mm_attention_step(energy_, Y, params_, Yout);
    else
      gauss_seidel_mm_step(energy_, Y, params_, Yout);
  }

  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>& Y) const
  {
    return sweep_ == Sweep::jacobi ? mm_attention_bound(energy_, Y, params_)
                                   : gauss_seidel_bound(params_);
  }

private:
  EnergyType energy_;
  StepParams<Scalar> params_;
  Sweep sweep_;
};

}  // namespace unfold
