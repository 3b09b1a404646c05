#pragma once

/// \file
/// Ways of combining steps: one step on a summed energy, Lie-Trotter alternation, Strang
/// splitting, and heavy-ball and Nesterov momentum around any step. Each names the energy it
/// claims to descend, so the trace measures the claim.

#include "../energy/sum.hpp"
#include "../stack/stack.hpp"
#include "gradient.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace unfold {

/// One gradient step on E_1 + E_2 (+ ...): Y+ = Y - alpha (grad E_1 + grad E_2).
template <Energy... Energies>
GradientStep<SumEnergy<Energies...>> summed_gradient_step(StepParams<typename SumEnergy<
                                                              Energies...>::Scalar> params,
                                                          Energies... energies)
{
  return GradientStep<SumEnergy<Energies...>>(SumEnergy<Energies...>(std::move(energies)...),
                                              params);
}

/// Lie-Trotter alternation: a then b, each on its own energy; the layer's energy is their sum.
/// This is the paper's layer (attention step, then feed-forward step).
template <UnfoldingStep A, UnfoldingStep B>
Layer<A, B> lie_trotter(A a, B b)
{
  return Layer<A, B>(std::move(a), std::move(b));
}

/// Strang splitting: half a step of a, a full step of b, half a step of a, as one step whose
/// energy is E_a + E_b. The caller builds `half_a` with half the step size of a.
template <UnfoldingStep HalfA, UnfoldingStep B>
  requires std::same_as<typename HalfA::Scalar, typename B::Scalar>
class StrangStep {
  using EnergyA = std::remove_cvref_t<decltype(std::declval<const HalfA&>().energy())>;
  using EnergyB = std::remove_cvref_t<decltype(std::declval<const B&>().energy())>;

public:
  using Scalar = typename B::Scalar;
  using EnergyType = SumEnergy<EnergyA, EnergyB>;

  StrangStep(HalfA half_a, B b)
      : half_a_(std::move(half_a)), b_(std::move(b)), energy_(half_a_.energy(), b_.energy())
  {
  }

  std::string_view name() const { return "strang"; }
  const EnergyType& energy() const { return energy_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    Matrix<Scalar> work(Y.rows(), Y.cols());
    half_a_.apply(Y, work);
    b_.apply(work, work);
    half_a_.apply(work, Yout);
  }

  /// Splitting has no descent guarantee of its own for the sum (max_step_size = 0).
  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>&) const
  {
    return {1, 0, "Strang splitting: no descent guarantee for the summed energy"};
  }

private:
  HalfA half_a_;
  B b_;
  EnergyType energy_;
};

namespace detail {

/// The previous input of a momentum step, kept between calls. `run` resets it at the start of
/// every forward pass; a momentum step is therefore not safe to share between concurrent runs.
template <class Scalar>
class MomentumMemory {
public:
  void reset() const { previous_.reset(); }

  /// Y - Y_previous (zero on the first call), and remembers Y.
  Matrix<Scalar> velocity(const ConstMatrixRef<Scalar>& Y) const
  {
    Matrix<Scalar> v = Matrix<Scalar>::Zero(Y.rows(), Y.cols());
    if (previous_ && previous_->rows() == Y.rows() && previous_->cols() == Y.cols())
      v = Y - *previous_;
    previous_ = Y;
    return v;
  }

private:
  mutable std::optional<Matrix<Scalar>> previous_;
};

template <class Scalar>
void require_momentum(std::string_view who, Scalar momentum)
{
  if (!(momentum >= Scalar(0) && momentum < Scalar(1)))
    fail(who, "momentum = " + std::to_string(momentum) + ", expected 0 <= momentum < 1");
}

}  // namespace detail

/// Heavy-ball momentum around a step: Y+ = step(Y) + beta (Y - Y_previous), where Y_previous
/// is this step's input at its previous call (the previous layer, in a tied stack).
template <UnfoldingStep Inner>
class HeavyBallStep {
public:
  using Scalar = typename Inner::Scalar;

  HeavyBallStep(Inner inner, Scalar momentum) : inner_(std::move(inner)), momentum_(momentum)
  {
    detail::require_momentum("HeavyBallStep", momentum_);
  }

  std::string_view name() const { return "heavy_ball"; }
  const auto& energy() const { return inner_.energy(); }
  void reset() const { memory_.reset(); }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    const Matrix<Scalar> velocity = memory_.velocity(Y);
    Matrix<Scalar> next(Y.rows(), Y.cols());
    inner_.apply(Y, next);
    Yout = next + momentum_ * velocity;
  }

  /// Momentum voids the inner step's guarantee, unless the momentum is 0.
  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>& Y) const
  {
    if (momentum_ == Scalar(0))
      return inner_.bound(Y);
    return {1, 0, "heavy-ball momentum: no monotone descent guarantee"};
  }

private:
  Inner inner_;
  Scalar momentum_;
  detail::MomentumMemory<Scalar> memory_;
};

/// Nesterov momentum around a step: Y+ = step(Y + beta (Y - Y_previous)).
template <UnfoldingStep Inner>
class NesterovStep {
public:
  using Scalar = typename Inner::Scalar;

  NesterovStep(Inner inner, Scalar momentum) : inner_(std::move(inner)), momentum_(momentum)
  {
    detail::require_momentum("NesterovStep", momentum_);
  }

  std::string_view name() const { return "nesterov"; }
  const auto& energy() const { return inner_.energy(); }
  void reset() const { memory_.reset(); }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    const Matrix<Scalar> lookahead = Y + momentum_ * memory_.velocity(Y);
    inner_.apply(lookahead, Yout);
  }

  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>& Y) const
  {
    if (momentum_ == Scalar(0))
      return inner_.bound(Y);
    return {1, 0, "Nesterov momentum: no monotone descent guarantee"};
  }

private:
  Inner inner_;
  Scalar momentum_;
  detail::MomentumMemory<Scalar> memory_;
};

}  // namespace unfold
