#pragma once

/// \file
/// The concave-convex (CCCP) update of the modern Hopfield energy, optionally damped or
/// over-relaxed (MATH.md section 6).

#include "../energy/hopfield.hpp"
#include "descent_bound.hpp"

#include <string_view>

namespace unfold {

/// One CCCP step on every row of Y at once, written into `Yout`:
///
///     Y+ = (1 - alpha) Y + alpha softmax_rows(beta Y X^T) X,
///
/// which for alpha = 1 is the update xi+ = X^T softmax(beta X xi) of Ramsauer et al., i.e.
/// cross-attention from the states to the stored patterns with keys = values = X and no
/// residual. Because grad E(xi) = xi - X^T softmax(beta X xi), the step is also the gradient
/// step Y - alpha grad E(Y).
///
/// Why it descends: E = f + g with f(xi) = 0.5 ||xi||^2 convex and
/// g(xi) = -(1/beta) log sum exp(beta X xi) concave. Replacing g by its tangent at xi_t gives
/// the majoriser Q(xi) = 0.5 ||xi - xi_+||^2 + c_t >= E(xi), equal to E at xi_t, minimised at
/// the CCCP point xi_+. On the segment xi_t + alpha (xi_+ - xi_t),
/// Q = 0.5 (1 - alpha)^2 ||xi_+ - xi_t||^2 + c_t, so
///
///     E(xi_alpha) <= E(xi_t) - alpha (1 - alpha / 2) ||xi_+ - xi_t||^2,
///
/// and every alpha in (0, 2] descends: damped (alpha < 1), CCCP (alpha = 1) and over-relaxed
/// (1 < alpha <= 2). Rows do not interact, so the same holds for the sum over rows.
///
/// \param Y states, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar>
void hopfield_step(const HopfieldEnergy<Scalar>& energy, const ConstMatrixRef<Scalar>& Y,
                   const StepParams<Scalar>& params, MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "hopfield_step";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  // The retrieval is a new matrix, so Yout may alias Y.
  const Scalar alpha = params.step_size;
  const Matrix<Scalar> target = energy.retrieve(Y);
  if (alpha == Scalar(1))
    Yout = target;
  else
    Yout = (Scalar(1) - alpha) * Y + alpha * target;
}

/// The bound proven above, at every point: alpha <= 2 (alpha = 1 is the CCCP update).
template <Real Scalar>
DescentBound<Scalar> hopfield_bound(const StepParams<Scalar>& params)
{
  params.validate("hopfield_bound");
  return {params.step_size, Scalar(2),
          "Hopfield CCCP majoriser 0.5 ||xi - xi+||^2 + c: alpha <= 2 (CCCP is alpha = 1)"};
}

/// The Hopfield step as an object for the unfolding operator.
template <Real Scalar_>
class HopfieldStep {
public:
  using Scalar = Scalar_;
  using EnergyType = HopfieldEnergy<Scalar>;

  /// \param params step size alpha, default 1 (the CCCP update).
  explicit HopfieldStep(EnergyType energy, StepParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("HopfieldStep");
  }

  std::string_view name() const { return "hopfield"; }
  const EnergyType& energy() const { return energy_; }
  const StepParams<Scalar>& params() const { return params_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    hopfield_step(energy_, Y, params_, Yout);
  }

  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>&) const
  {
    return hopfield_bound(params_);
  }

private:
  EnergyType energy_;
  StepParams<Scalar> params_;
};

}  // namespace unfold
