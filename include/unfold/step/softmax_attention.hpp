#pragma once

/// \file
/// The plain dot-product softmax attention step (MATH.md 1.2), next to the MM step it
/// approximates.

#include "../energy/attention.hpp"
#include "descent_bound.hpp"
#include "detail_softmax.hpp"
#include "mm_attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

namespace unfold {

namespace detail {

/// Softmax of a column of logits g (m entries) in place, with the packet exp of
/// attention_kernel.hpp: g <- exp(g - max g) / sum. A column whose maximum is not finite
/// becomes zeros (no weights).
template <class Scalar>
void softmax_column(Scalar* g, Eigen::Index m)
{
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<Scalar>::type;
  Eigen::Map<Vector<Scalar>> column(g, m);
  const Scalar top = column.maxCoeff();
  if (!std::isfinite(top)) {
    column.setZero();
    return;
  }
  const Packet shift = ei::pset1<Packet>(top);
  const Scalar sum =
      exp_column(g, g, m, [&](const Packet& gp, const Packet&) { return ei::psub(gp, shift); });
  column /= sum;
}

/// Streamed plain softmax attention: out = row_softmax(Z Z^T) Y (n x d) over tiles of
/// `tile` keys and queries, with a running maximum and normaliser per query (the largest
/// logit of a query is not known in advance, unlike the MM step's): for each block of keys,
///     m' = max(m, max_j l_ij),  l <- l e^(m - m') + sum_j e^(l_ij - m'),
///     acc <- acc e^(m - m') + sum_j e^(l_ij - m') y_j,
/// and finally out_i = acc_i / l_i. Memory: one tile and the n x d accumulator.
template <class Scalar>
void softmax_mix_streamed(const Matrix<Scalar>& Z, const ConstMatrixRef<Scalar>& Y,
                          Eigen::Index tile, Matrix<Scalar>& out)
{
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<Scalar>::type;
  const Eigen::Index n = Z.rows();
  const Scalar minus_infinity = -std::numeric_limits<Scalar>::infinity();
  tile = std::max<Eigen::Index>(1, std::min(tile, n));
  out.setZero(n, Y.cols());

  Matrix<Scalar> T(tile, tile);
  Vector<Scalar> top(tile), norm(tile), block_top(tile), rescale(tile);
  for (Eigen::Index i0 = 0; i0 < n; i0 += tile) {
    const Eigen::Index bi = std::min(tile, n - i0);
    top.head(bi).setConstant(minus_infinity);
    norm.head(bi).setZero();
    auto acc = out.middleRows(i0, bi);

    for (Eigen::Index j0 = 0; j0 < n; j0 += tile) {
      const Eigen::Index bj = std::min(tile, n - j0);
      // Column c holds the logits of query i0 + c against the keys of this block.
      auto L = T.topLeftCorner(bj, bi);
      L.noalias() = Z.middleRows(j0, bj) * Z.middleRows(i0, bi).transpose();
      block_top.head(bi) = L.colwise().maxCoeff().transpose();
      for (Eigen::Index c = 0; c < bi; ++c) {
        const Scalar next = std::max(top(c), block_top(c));
        if (!std::isfinite(next)) {
          // An infinite logit: the dense softmax gives this query no weights; so here.
          top(c) = std::numeric_limits<Scalar>::infinity();
          rescale(c) = Scalar(1);
          L.col(c).setZero();
          continue;
        }
        rescale(c) = top(c) == minus_infinity ? Scalar(0) : std::exp(top(c) - next);
        const Packet shift = ei::pset1<Packet>(next);
        Scalar* g = &L.coeffRef(0, c);
        const Scalar sum = exp_column(
            g, g, bj, [&](const Packet& gp, const Packet&) { return ei::psub(gp, shift); });
        norm(c) = norm(c) * rescale(c) + sum;
        top(c) = next;
      }
      // Row c of the accumulator by rescale(c): a diagonal product, which runs down the
      // contiguous columns instead of along the strided rows.
      acc = rescale.head(bi).asDiagonal() * acc;
      acc.noalias() += L.transpose() * Y.middleRows(j0, bj);
    }
    for (Eigen::Index c = 0; c < bi; ++c)
      rescale(c) = std::isfinite(top(c)) ? Scalar(1) / norm(c) : Scalar(0);
    acc = rescale.head(bi).asDiagonal() * acc;
  }
}

}  // namespace detail

/// Y+ = (1 - alpha) Y + alpha row_softmax(Y F F^T Y^T) Y, written into `Yout`.
///
/// `F` (d x k) is the factor of the metric the step uses. It equals the Jacobi MM step on the
/// ExpKernel energy with P = F exactly when all norms ||y_j F|| are equal; otherwise it has no
/// descent guarantee and can raise the energy.
///
/// `policy` chooses the dense path (the n x n logits, from a symmetric rank-k product) or the
/// streamed one (tiles, with a running maximum and normaliser per query; memory linear in n).
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar>
void softmax_attention_step(const ConstMatrixRef<Scalar>& F, const ConstMatrixRef<Scalar>& Y,
                            const StepParams<Scalar>& params, MatrixRef<Scalar> Yout,
                            const AttentionPolicy& policy = {})
{
  constexpr std::string_view who = "softmax_attention_step";
  params.validate(who);
  policy.validate(who);
  detail::require_nonempty(who, "F", F);
  detail::require_finite(who, "F", F);
  detail::require_tokens(who, Y, F.rows());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  const Eigen::Index n = Y.rows();
  const Matrix<Scalar> Z = Y * F;
  Matrix<Scalar> mixed;
  if (policy.streams(n)) {
    detail::softmax_mix_streamed(Z, Y, policy.tile(n), mixed);
  } else {
    // The logits Z Z^T are symmetric: one triangle from a triangular product, mirrored; then
    // column i holds the weights of query i.
    Matrix<Scalar> weights(n, n);
    weights.template triangularView<Eigen::Lower>() = Z * Z.transpose();
    weights = weights.template selfadjointView<Eigen::Lower>();
    for (Eigen::Index j = 0; j < n; ++j)
      detail::softmax_column(&weights.coeffRef(0, j), n);
    mixed.noalias() = weights.transpose() * Y;
  }

  const Scalar alpha = params.step_size;
  Yout = (Scalar(1) - alpha) * Y + alpha * mixed;
}

/// The softmax step inherits the Jacobi MM bound when it is the MM step: when F spans the
/// energy's metric (F F^T = P P^T), the kernel is ExpKernel, lambda = 0, and the norms
/// ||y_j F|| agree to `tolerance` relative. Otherwise the theory proves nothing
/// (max_step_size = 0).
template <Real Scalar>
DescentBound<Scalar> softmax_attention_bound(const AttentionEnergy<Scalar, ExpKernel>& energy,
                                             const ConstMatrixRef<Scalar>& F,
                                             const ConstMatrixRef<Scalar>& Y,
                                             const StepParams<Scalar>& params,
                                             Scalar tolerance = Scalar(1e-6))
{
  constexpr std::string_view who = "softmax_attention_bound";
  params.validate(who);
  detail::require_rows(who, "F", F, energy.dim(), "d");
  detail::require_tokens(who, Y, energy.dim());

  const Matrix<Scalar> metric_gap = F * F.transpose() - energy.metric();
  const Scalar metric_scale = std::max(Scalar(1), energy.metric().cwiseAbs().maxCoeff());
  const Vector<Scalar> q = (Y * F).rowwise().squaredNorm();
  const Scalar spread = q.maxCoeff() - q.minCoeff();

  const bool same_metric = metric_gap.cwiseAbs().maxCoeff() <= tolerance * metric_scale;
  const bool equal_norms = spread <= tolerance * std::max(Scalar(1), q.maxCoeff());
  if (same_metric && equal_norms && energy.lambda() == Scalar(0)) {
    DescentBound<Scalar> bound = mm_attention_bound(energy, Y, params);
    bound.rule = "softmax = Jacobi MM (equal metric norms): alpha <= 1 + 1 / max_i D_i";
    return bound;
  }
  return {params.step_size, Scalar(0),
          "softmax with unequal metric norms or another metric: no descent guarantee"};
}

/// The softmax step as an object for the unfolding operator. The energy it is traced against
/// and the factor F of the metric it uses are separate, because the authors' model
/// (compat/authors.hpp) uses different metrics for the two.
template <Real Scalar_>
class SoftmaxAttentionStep {
public:
  using Scalar = Scalar_;
  using EnergyType = AttentionEnergy<Scalar, ExpKernel>;

  /// Uses the energy's own factor P as F.
  explicit SoftmaxAttentionStep(EnergyType energy, StepParams<Scalar> params = {})
      : energy_(std::move(energy)), factor_(energy_.factor()), params_(params)
  {
    params_.validate("SoftmaxAttentionStep");
  }

  SoftmaxAttentionStep(EnergyType energy, Matrix<Scalar> factor, StepParams<Scalar> params)
      : energy_(std::move(energy)), factor_(std::move(factor)), params_(params)
  {
    constexpr std::string_view who = "SoftmaxAttentionStep";
    params_.validate(who);
    detail::require_rows(who, "factor", factor_, energy_.dim(), "d");
    detail::require_finite(who, "factor", factor_);
  }

  std::string_view name() const { return "softmax_attention"; }
  const EnergyType& energy() const { return energy_; }
  const Matrix<Scalar>& factor() const { return factor_; }
  const StepParams<Scalar>& params() const { return params_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    softmax_attention_step<Scalar>(factor_, Y, params_, Yout, energy_.policy());
  }

  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>& Y) const
  {
    return softmax_attention_bound<Scalar>(energy_, factor_, Y, params_);
  }

private:
  EnergyType energy_;
  Matrix<Scalar> factor_;
  StepParams<Scalar> params_;
};

}  // namespace unfold
