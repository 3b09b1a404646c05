#pragma once

/// \file
/// The feed-forward step: a gradient step (no ReLU) or a proximal-gradient step (ReLU) on the
/// feed-forward energy (MATH.md section 2).

#include "../energy/feedforward.hpp"
#include "descent_bound.hpp"

#include <string_view>

namespace unfold {

/// Parameters of the feed-forward step.
template <Real Scalar>
struct FeedForwardParams {
  /// alpha; the layer's weight is (1 - alpha) I - alpha S.
  Scalar step_size = 1;

  /// Apply ReLU, the prox of the non-negativity indicator, after the gradient step.
  bool relu = true;

  void validate(std::string_view who) const
  {
    detail::require_positive(who, "step_size", step_size);
  }
};

/// Y+ = [max(0, .)] ( Y ((1 - alpha) I - alpha S) + alpha 1 b ), written into `Yout`.
///
/// This is Y - alpha grad E_ffn(Y), followed by ReLU when `params.relu`.
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar>
void feedforward_step(const FeedForwardEnergy<Scalar>& energy, const ConstMatrixRef<Scalar>& Y,
                      const FeedForwardParams<Scalar>& params, MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "feedforward_step";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  // Written as the gradient step itself, so that it is the same arithmetic whatever alpha.
  const Scalar alpha = params.step_size;
  Matrix<Scalar> next = Y * energy.weight();
  next = Y - alpha * (next + Y);
  next.rowwise() += alpha * energy.bias();

  if (params.relu)
    Yout = next.cwiseMax(Scalar(0));
  else
    Yout = next;
}

/// The bound of MATH.md section 2: E(Y+) <= E(Y) - (1/alpha - L/2) ||Y+ - Y||^2 with
/// L = lambda_max(S + I), so the step descends for alpha <= 2 / L. With ReLU this holds for
/// Y >= 0 (the indicator must be finite at Y).
template <Real Scalar>
DescentBound<Scalar> feedforward_bound(const FeedForwardEnergy<Scalar>& energy,
                                       const FeedForwardParams<Scalar>& params)
{
  params.validate("feedforward_bound");
  const Scalar L = energy.lipschitz();
  return {params.step_size, L > Scalar(0) ? Scalar(2) / L : DescentBound<Scalar>::unbounded(),
          "(proximal) gradient step: alpha <= 2 / lambda_max(S + I)"};
}

/// The feed-forward step as an object for the unfolding operator.
template <Real Scalar_>
class FeedForwardStep {
public:
  using Scalar = Scalar_;
  using EnergyType = FeedForwardEnergy<Scalar>;

  explicit FeedForwardStep(EnergyType energy, FeedForwardParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("FeedForwardStep");
  }

  std::string_view name() const { return params_.relu ? "feedforward_relu" : "feedforward"; }
  const EnergyType& energy() const { return energy_; }
  const FeedForwardParams<Scalar>& params() const { return params_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    feedforward_step(energy_, Y, params_, Yout);
  }

  /// With ReLU, the bound is proven only from a point Y >= 0; elsewhere max_step_size = 0.
  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>& Y) const
  {
    DescentBound<Scalar> b = feedforward_bound(energy_, params_);
    if (params_.relu && (Y.array() < Scalar(0)).any()) {
      b.max_step_size = 0;
      b.rule = "proximal step from a point outside Y >= 0: no descent guarantee";
    }
    return b;
  }

private:
  EnergyType energy_;
  FeedForwardParams<Scalar> params_;
};

}  // namespace unfold
