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

/// The Jacobi MM step through one pass over the pairs (dense or streamed, as the energy's
/// policy says), Y+ = (1 - alpha) Y + alpha diag(1 / (lambda + D)) W Y, where W holds the
/// weights beta_ij = rho'(s_ij) with the diagonal rho'(0) (lambda = 0: the self term of the
/// softmax) or 0 (lambda > 0), and D its row sums, which come out of the same product as the
/// last column of W [Y | 1].
///
/// The weights need no running maximum: rho is concave, so rho' is non-increasing and the
/// largest weight of query i is its own, rho'(s_ii) = rho'(0), known before any key is seen.
/// Every weight is thus in [0, rho'(0)], the sums cannot overflow, and with lambda = 0 the
/// normaliser is at least rho'(0). Returns the pair sum at Y, from which the energy at Y
/// follows at no further cost.
template <class Scalar, class Kernel>
double jacobi_mm_pass(const AttentionEnergy<Scalar, Kernel>& energy,
                      const ConstMatrixRef<Scalar>& Y, Scalar alpha, MatrixRef<Scalar> Yout,
                      MetricCoordinates<Scalar>& mc)
{
  const Eigen::Index n = Y.rows(), d = Y.cols();
  const Scalar lambda = energy.lambda();
  metric_coordinates(Y, energy.factor(), mc);

  const Scalar self = lambda == Scalar(0) ? Kernel::derivative(Scalar(0)) : Scalar(0);
  const Matrix<Scalar> mix = with_ones_column(Y);
  Matrix<Scalar> out;
  const double pairs = pair_pass<Kernel>(mc, energy.policy().tile(n), &mix, self, out);

  // Elementwise in Y, so Yout may alias Y.
  const auto normaliser = out.col(d).array() + lambda;
  Yout = (Scalar(1) - alpha) * Y +
         alpha * (out.leftCols(d).array().colwise() / normaliser).matrix();
  return pairs;
}

/// The earlier log-domain form of the Jacobi step, for a kernel whose rho'(0) is not a finite
/// positive number (no kernel of this library): the weights of each query are normalised
/// after subtracting their maximum. Holds the n x n matrix whatever the policy.
template <class Scalar, class Kernel>
void jacobi_mm_log_domain(const AttentionEnergy<Scalar, Kernel>& energy,
                          const ConstMatrixRef<Scalar>& Y, Scalar alpha, MatrixRef<Scalar> Yout)
{
  // Column i of `weights` holds the weights of query i (the log-weights are symmetric).
  Matrix<Scalar> weights;
  log_weights(energy, Y, weights);
  if (energy.lambda() == Scalar(0))
    softmax_columns_in_place(weights);
  else
    for (Eigen::Index i = 0; i < weights.cols(); ++i)
      damped_weights_in_place(weights.col(i), i, energy.lambda());

  // The product is evaluated into a temporary, so Yout may alias Y.
  Matrix<Scalar> mixed = weights.transpose() * Y;
  Yout = (Scalar(1) - alpha) * Y + alpha * mixed;
}

template <class Kernel, class Scalar>
bool has_finite_self_weight()
{
  const Scalar self = Kernel::derivative(Scalar(0));
  return std::isfinite(self) && self > Scalar(0);
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
/// It runs on the path of the energy's AttentionPolicy: dense (one n x n weight matrix) or
/// streamed (tiles of the weights, memory linear in n).
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

  if (energy.lambda() == Scalar(0) && !detail::has_finite_self_weight<Kernel, Scalar>()) {
    detail::jacobi_mm_log_domain(energy, Y, params.step_size, Yout);
    return;
  }
  detail::MetricCoordinates<Scalar> mc;
  detail::jacobi_mm_pass(energy, Y, params.step_size, Yout, mc);
}

/// The Jacobi MM step that also returns the energy at its input Y, a by-product of the
/// weights the step computes (no second pass over the pairs).
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
/// \return energy.value(Y), bit for bit.
template <Real Scalar, class Kernel>
Scalar mm_attention_step_and_value(const AttentionEnergy<Scalar, Kernel>& energy,
                                   const ConstMatrixRef<Scalar>& Y,
                                   const StepParams<Scalar>& params, MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "mm_attention_step_and_value";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  if (energy.lambda() == Scalar(0) && !detail::has_finite_self_weight<Kernel, Scalar>()) {
    const Scalar value = energy.value(Y);
    detail::jacobi_mm_log_domain(energy, Y, params.step_size, Yout);
    return value;
  }
  detail::MetricCoordinates<Scalar> mc;
  const double pairs = detail::jacobi_mm_pass(energy, Y, params.step_size, Yout, mc);
  return detail::attention_energy_from_pairs(energy.lambda(), pairs, mc);
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

  // D = B_off 1, from one pass over the pairs (on the energy's path).
  const Eigen::Index n = Y.rows();
  detail::MetricCoordinates<Scalar> mc;
  detail::metric_coordinates(Y, energy.factor(), mc);
  const Matrix<Scalar> ones = Matrix<Scalar>::Ones(n, 1);
  Matrix<Scalar> out;
  detail::pair_pass<Kernel>(mc, energy.policy().tile(n), &ones, Scalar(0), out);
  const Vector<Scalar> D = out.col(0);

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

  /// apply(Y, Yout), returning energy().value(Y) bit for bit. The Jacobi step computes the
  /// weights the energy needs and reports it for free; the Gauss-Seidel sweep, whose weights
  /// change as it goes, evaluates it first. run() uses this for its trace.
  Scalar apply_and_value(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    if (sweep_ == Sweep::jacobi)
      return mm_attention_step_and_value(energy_, Y, params_, Yout);
    const Scalar value = energy_.value(Y);
    gauss_seidel_mm_step(energy_, Y, params_, Yout);
    return value;
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
