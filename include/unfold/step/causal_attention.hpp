#pragma once

/// \file
/// The causal MM attention step: each token takes an MM step on its own causal energy.

#include "../energy/causal_attention.hpp"
#include "descent_bound.hpp"
#include "detail_softmax.hpp"
#include "mm_attention.hpp"

#include <limits>
#include <string_view>

namespace unfold {

/// y_i+ = (1 - alpha) y_i + alpha sum_{j <= i} A_ij y_j with A_i the weights beta_ij over
/// j <= i normalised to 1 (self term rho'(0) included; for ExpKernel the key-norm-corrected
/// causal softmax), all from the current tokens; with lambda > 0 the weights are
/// beta_ij / (lambda + D_i) over j < i. Token i reads no token after it.
///
/// It is the MM step on E_i(. | y_<i) for each token at once, so E_i(y_i+ | y_<i) <=
/// E_i(y_i | y_<i) for every alpha in (0, 1] (token 0 has no past and stays).
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar, class Kernel>
void causal_mm_step(const CausalAttentionEnergy<Scalar, Kernel>& energy,
                    const ConstMatrixRef<Scalar>& Y, const StepParams<Scalar>& params,
                    MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "causal_mm_step";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  // Column i holds the weights of query i; keys after i are masked out.
  Matrix<Scalar> weights;
  detail::log_weights(energy.pairwise(), Y, weights);
  const Eigen::Index n = Y.rows();
  for (Eigen::Index i = 0; i < n; ++i)
    weights.col(i).tail(n - i - 1).setConstant(-std::numeric_limits<Scalar>::infinity());
  if (energy.lambda() == Scalar(0))
    detail::softmax_columns_in_place(weights);
  else
    for (Eigen::Index i = 0; i < n; ++i)
      detail::damped_weights_in_place(weights.col(i), i, energy.lambda());

  const Scalar alpha = params.step_size;
  Matrix<Scalar> mixed = weights.transpose() * Y;
  Yout = (Scalar(1) - alpha) * Y + alpha * mixed;
}

/// The causal MM step as an object for the unfolding operator. Its trace records the summed
/// energy, which the step does not promise to lower; the per-token promise is checked with
/// CausalAttentionEnergy::token_energies_given.
template <Real Scalar_, class Kernel = ExpKernel>
class CausalMMStep {
public:
  using Scalar = Scalar_;
  using EnergyType = CausalAttentionEnergy<Scalar, Kernel>;

  explicit CausalMMStep(EnergyType energy, StepParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("CausalMMStep");
  }

  std::string_view name() const { return "causal_mm_attention"; }
  const EnergyType& energy() const { return energy_; }
  const StepParams<Scalar>& params() const { return params_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    causal_mm_step(energy_, Y, params_, Yout);
  }

  /// The per-token bound alpha <= 1 (proven for each E_i, not for their sum).
  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>&) const
  {
    return {params_.step_size, Scalar(1), "causal MM, per token: alpha <= 1"};
  }

private:
  EnergyType energy_;
  StepParams<Scalar> params_;
};

}  // namespace unfold
