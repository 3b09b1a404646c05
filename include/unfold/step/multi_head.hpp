#pragma once

/// \file
/// The multi-head MM attention step (MATH.md 1.4).

#include "../energy/multi_head.hpp"
#include "descent_bound.hpp"
#include "mm_attention.hpp"

#include <string_view>

namespace unfold {

/// Y+ = Y - alpha sum_h (I - A_h) Y U_h U_h^T,  A_h = A(Y U_h), written into `Yout`.
///
/// Each head moves the tokens only inside its own block, by that head's Jacobi MM step (with
/// its lambda; see mm_attention_step). The heads do not interact, so the step descends the
/// summed energy whenever each head's step descends its own: for every alpha in (0, 1] when
/// lambda = 0. When the blocks span R^d this is `(1 - alpha) Y + alpha sum_h A_h Y U_h U_h^T`,
/// multi-head attention with W_Q^h W_K^h^T = W_V^h W_O^h = U_h U_h^T and residual 1 - alpha.
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar, class Kernel>
void multi_head_mm_step(const MultiHeadAttentionEnergy<Scalar, Kernel>& energy,
                        const ConstMatrixRef<Scalar>& Y, const StepParams<Scalar>& params,
                        MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "multi_head_mm_step";
  params.validate(who);
  detail::require_tokens(who, Y, energy.dim());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  // Each head's full MM step (alpha = 1) gives A_h Y; its move is projected on the block.
  Matrix<Scalar> next = Y;
  Matrix<Scalar> mixed(Y.rows(), Y.cols());
  for (std::size_t h = 0; h < energy.heads(); ++h) {
    const auto& head = energy.head(h);
    mm_attention_step(head, Y, {Scalar(1)}, mixed);
    const Matrix<Scalar>& U = head.factor();
    const Matrix<Scalar> move = (mixed - Y) * U;
    next.noalias() += params.step_size * (move * U.transpose());
  }
  Yout = next;
}

/// alpha <= min over heads of each head's Jacobi bound (at least 1 when lambda = 0).
template <Real Scalar, class Kernel>
DescentBound<Scalar> multi_head_mm_bound(const MultiHeadAttentionEnergy<Scalar, Kernel>& energy,
                                         const ConstMatrixRef<Scalar>& Y,
                                         const StepParams<Scalar>& params)
{
  DescentBound<Scalar> bound{params.step_size, DescentBound<Scalar>::unbounded(),
                             "multi-head MM: alpha <= min_h (Jacobi bound of head h)"};
  for (std::size_t h = 0; h < energy.heads(); ++h)
    bound.max_step_size =
        std::min(bound.max_step_size, mm_attention_bound(energy.head(h), Y, params).max_step_size);
  return bound;
}

/// The multi-head MM step as an object for the unfolding operator.
template <Real Scalar_, class Kernel = ExpKernel>
class MultiHeadMMStep {
public:
  using Scalar = Scalar_;
  using EnergyType = MultiHeadAttentionEnergy<Scalar, Kernel>;

  explicit MultiHeadMMStep(EnergyType energy, StepParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("MultiHeadMMStep");
  }

  std::string_view name() const { return "multi_head_mm_attention"; }
  const EnergyType& energy() const { return energy_; }
  const StepParams<Scalar>& params() const { return params_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    multi_head_mm_step(energy_, Y, params_, Yout);
  }

  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>& Y) const
  {
    return multi_head_mm_bound(energy_, Y, params_);
  }

private:
  EnergyType energy_;
  StepParams<Scalar> params_;
};

}  // namespace unfold
