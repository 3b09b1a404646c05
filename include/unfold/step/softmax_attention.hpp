#pragma once

/// \file
/// The plain dot-product softmax attention step (MATH.md 1.2), next to the MM step it
/// approximates.

#include "../energy/attention.hpp"
#include "descent_bound.hpp"
#include "detail_softmax.hpp"
#include "mm_attention.hpp"

#include <string_view>

namespace unfold {

/// Y+ = (1 - alpha) Y + alpha row_softmax(Y F F^T Y^T) Y, written into `Yout`.
///
/// `F` (d x k) is the factor of the metric the step uses. It equals the Jacobi MM step on the
/// ExpKernel energy with P = F exactly when all norms ||y_j F|| are equal; otherwise it has no
/// descent guarantee and can raise the energy.
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar>
void softmax_attention_step(const ConstMatrixRef<Scalar>& F, const ConstMatrixRef<Scalar>& Y,
                            const StepParams<Scalar>& params, MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "softmax_attention_step";
  params.validate(who);
  detail::require_nonempty(who, "F", F);
  detail::require_finite(who, "F", F);
  detail::require_tokens(who, Y, F.rows());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  // The logits Z Z^T are symmetric, so column i holds the weights of query i.
  const Matrix<Scalar> Z = Y * F;
  Matrix<Scalar> weights(Y.rows(), Y.rows());
  weights.setZero();
  weights.template selfadjointView<Eigen::Lower>().rankUpdate(Z);
  weights = weights.template selfadjointView<Eigen::Lower>();
  detail::softmax_columns_in_place(weights);

  const Scalar alpha = params.step_size;
  Matrix<Scalar> mixed = weights.transpose() * Y;
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
    softmax_attention_step<Scalar>(factor_, Y, params_, Yout);
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
