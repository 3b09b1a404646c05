#pragma once

/// \file
/// The gradient step and the proximal-gradient step on any Energy.

#include "../core/concepts.hpp"
#include "descent_bound.hpp"

#include <string_view>

namespace unfold {

/// Y+ = Y - alpha grad E(Y), written into `Yout` (n x d; may be `Y` itself).
template <Energy E>
void gradient_step(const E& energy, const ConstMatrixRef<typename E::Scalar>& Y,
                   const StepParams<typename E::Scalar>& params,
                   MatrixRef<typename E::Scalar> Yout)
{
  using Scalar = typename E::Scalar;
  constexpr std::string_view who = "gradient_step";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  Matrix<Scalar> G(Y.rows(), Y.cols());
  energy.gradient(Y, G);
  Yout = Y - params.step_size * G;
}

/// A regulariser with a proximal map: `prox(Y, step_size, out)` for prox_{alpha R}, or
/// `prox(Y, out)` when the map does not depend on the step size (indicators, whose prox is a
/// projection).
template <class R>
concept Proximable = requires(const R& r, const ConstMatrixRef<typename R::Scalar>& Y,
                              typename R::Scalar step_size, MatrixRef<typename R::Scalar> out) {
  requires requires { r.prox(Y, out); } || requires { r.prox(Y, step_size, out); };
};

/// Y+ = prox_{alpha R}(Y - alpha grad E(Y)), written into `Yout` (n x d; may be `Y` itself).
template <Energy E, Proximable R>
  requires std::same_as<typename E::Scalar, typename R::Scalar>
void proximal_gradient_step(const E& energy, const R& regulariser,
                            const ConstMatrixRef<typename E::Scalar>& Y,
                            const StepParams<typename E::Scalar>& params,
                            MatrixRef<typename E::Scalar> Yout)
{
  using Scalar = typename E::Scalar;
  Matrix<Scalar> moved(Y.rows(), Y.cols());
  gradient_step(energy, Y, params, moved);
  detail::require_shape("proximal_gradient_step", "Yout", Yout, Y.rows(), Y.cols());
  if constexpr (requires { regulariser.prox(moved, params.step_size, Yout); })
    regulariser.prox(moved, params.step_size, Yout);
  else
    regulariser.prox(moved, Yout);
}

/// For an energy that knows the Lipschitz constant L of its gradient (a member
/// `lipschitz()`), the descent lemma bound alpha <= 2 / L.
template <Energy E>
  requires requires(const E& e) { e.lipschitz(); }
DescentBound<typename E::Scalar> gradient_bound(const E& energy,
                                                const StepParams<typename E::Scalar>& params)
{
  using Scalar = typename E::Scalar;
  params.validate("gradient_bound");
  const Scalar L = energy.lipschitz();
  return {params.step_size, L > Scalar(0) ? Scalar(2) / L : DescentBound<Scalar>::unbounded(),
          "gradient step: alpha <= 2 / L"};
}

/// A gradient step on any Energy as an object for the unfolding operator.
template <Energy E>
class GradientStep {
public:
  using Scalar = typename E::Scalar;
  using EnergyType = E;

  explicit GradientStep(E energy, StepParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("GradientStep");
  }

  std::string_view name() const { return "gradient"; }
  const E& energy() const { return energy_; }
  const StepParams<Scalar>& params() const { return params_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    gradient_step(energy_, Y, params_, Yout);
  }

  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>&) const
  {
    if constexpr (requires { energy_.lipschitz(); })
      return gradient_bound(energy_, params_);
    else
      return {params_.step_size, Scalar(0), "no Lipschitz constant known for this energy"};
  }

private:
  E energy_;
  StepParams<Scalar> params_;
};

}  // namespace unfold
