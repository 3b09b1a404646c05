#pragma once

/// \file
/// The Energy Transformer step x <- x - alpha dE/dg (Hoover et al. 2023; MATH.md section 6).

#include "../energy/energy_transformer.hpp"
#include "descent_bound.hpp"

#include <string_view>

namespace unfold {

/// How one Energy Transformer step visits the two terms.
enum class EnergyTransformerUpdate {
  combined,    ///< one move along -(dE_att/dg + dE_hop/dg), both taken at x
  alternating  ///< x' = x - alpha dE_att/dg(x), then x'' = x' - alpha dE_hop/dg(x')
};

/// Parameters of the Energy Transformer step.
template <Real Scalar>
struct EnergyTransformerParams {
  /// alpha, the step along -dE/dg. No bound is proven (see energy_transformer_step); the
  /// default was measured safe on the library's random problems, not proven.
  Scalar step_size = Scalar(1e-3);

  EnergyTransformerUpdate update = EnergyTransformerUpdate::combined;

  void validate(std::string_view who) const
  {
    detail::require_positive(who, "step_size", step_size);
  }
};

/// One Energy Transformer step, written into `Yout`:
///
///     x+ = x - alpha dE/dg(x)            (combined),
///
/// for every token x (a row of Y), g = LayerNorm(x). Note the direction is dE/dg, not dE/dx.
///
/// Why it descends: dE/dx = J dE/dg with J = dg/dx the Hessian of the layer-norm Lagrangian,
/// symmetric positive semi-definite (energy/energy_transformer.hpp). Along the flow
/// dx/dt = -dE/dg, dE/dt = -(dE/dg)^T J (dE/dg) <= 0, so E never rises in continuous time, and
/// the discrete step lowers E for every alpha below some alpha_max(x) > 0 wherever
/// J dE/dg != 0. A component of dE/dg along the all-ones direction moves x without changing g,
/// hence without changing E. The theory gives no explicit alpha_max: the bound reports 0.
///
/// Alternating sub-steps descend their own term for small alpha but may raise the other; the
/// pair agrees with the combined step to first order in alpha, so the layer as a whole still
/// lowers E for small enough alpha. An energy holding one term makes both updates the same.
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar>
void energy_transformer_step(const EnergyTransformerEnergy<Scalar>& energy,
                             const ConstMatrixRef<Scalar>& Y,
                             const EnergyTransformerParams<Scalar>& params,
                             MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "energy_transformer_step";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  const Scalar alpha = params.step_size;
  Matrix<Scalar> x = Y;
  Matrix<Scalar> direction(Y.rows(), Y.cols());
  const bool split = params.update == EnergyTransformerUpdate::alternating &&
                     energy.options().terms == EnergyTransformerTerms::both;
  if (split) {
    energy.value_and_activation_gradient(x, direction, EnergyTransformerTerms::attention);
    x -= alpha * direction;
    energy.value_and_activation_gradient(x, direction, EnergyTransformerTerms::memory);
    x -= alpha * direction;
  } else {
    energy.value_and_activation_gradient(x, direction);
    x -= alpha * direction;
  }
  Yout = x;
}

/// No explicit step-size bound is proven for the Energy Transformer step: max_step_size = 0.
template <Real Scalar>
DescentBound<Scalar> energy_transformer_bound(const EnergyTransformerParams<Scalar>& params)
{
  params.validate("energy_transformer_bound");
  return {params.step_size, Scalar(0),
          "Energy Transformer: descends for small enough alpha (convex layer-norm Lagrangian); "
          "no explicit bound"};
}

/// The Energy Transformer step as an object for the unfolding operator.
template <Real Scalar_>
class EnergyTransformerStep {
public:
  using Scalar = Scalar_;
  using EnergyType = EnergyTransformerEnergy<Scalar>;

  explicit EnergyTransformerStep(EnergyType energy, EnergyTransformerParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("EnergyTransformerStep");
  }

  std::string_view name() const
  {
    return params_.update == EnergyTransformerUpdate::combined ? "energy_transformer"
                                                               : "energy_transformer_alternating";
  }
  const EnergyType& energy() const { return energy_; }
  const EnergyTransformerParams<Scalar>& params() const { return params_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    energy_transformer_step(energy_, Y, params_, Yout);
  }

  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>&) const
  {
    return energy_transformer_bound(params_);
  }

private:
  EnergyType energy_;
  EnergyTransformerParams<Scalar> params_;
};

}  // namespace unfold
