#pragma once

/// \file
/// Maps from unfolded steps to the weights of the reference Transformer (MATH.md 1.1 and 2),
/// and the measured gap between the two where the theory says they differ.
///
/// The reference (reference/) never sees the energy code; these maps are the only bridge, so
/// that agreement between a step and its reference layer is a real check.

#include "../reference/attention.hpp"
#include "../reference/feedforward.hpp"
#include "../step/feedforward.hpp"
#include "../step/mm_attention.hpp"
#include "../step/multi_head.hpp"
#include "../step/softmax_attention.hpp"

namespace unfold::check {

/// The single-head reference attention layer `softmax(Q K^T) V W_O + (1 - alpha) Y` with
/// W_Q = W_K = F (d x k), scale 1, W_V = I, W_O = alpha I and residual weight 1 - alpha.
///
/// This is plain softmax attention; it equals the Jacobi MM step on the ExpKernel energy with
/// P = F, lambda = 0, exactly when the metric norms ||y_j F|| are all equal (MATH.md 1.2).
template <Real Scalar>
reference::MultiHeadAttention<Scalar> reference_attention(const ConstMatrixRef<Scalar>& F,
                                                          Scalar step_size)
{
  const Eigen::Index d = F.rows();
  reference::MultiHeadAttention<Scalar> layer;
  layer.W_Q = F;
  layer.W_K = F;
  layer.W_V = Matrix<Scalar>::Identity(d, d);
  layer.W_O = step_size * Matrix<Scalar>::Identity(d, d);
  layer.heads = 1;
  layer.scale = Scalar(1);
  layer.residual_weight = Scalar(1) - step_size;
  return layer;
}

/// The reference layer of an MM attention step (its energy's P and its step size).
template <Real Scalar>
reference::MultiHeadAttention<Scalar> reference_attention(const MMAttentionStep<Scalar>& step)
{
  return reference_attention<Scalar>(step.energy().factor(), step.params().step_size);
}

/// The reference layer of a softmax attention step (its own factor and step size); equal to
/// the step for every input.
template <Real Scalar>
reference::MultiHeadAttention<Scalar> reference_attention(
    const SoftmaxAttentionStep<Scalar>& step)
{
  return reference_attention<Scalar>(step.factor(), step.params().step_size);
}

/// The multi-head reference attention layer of a multi-head MM step whose blocks U_h are of
/// equal width and together span R^d: W_Q = W_K = W_V = [U_1 ... U_h], W_O = alpha U^T,
/// h heads, scale 1, residual weight 1 - alpha (MATH.md 1.4: W_Q^h W_K^h^T = W_V^h W_O^h =
/// U_h U_h^T up to the step size). Equal to the step when, for every head, the norms
/// ||y_j U_h|| agree over the tokens.
template <Real Scalar>
reference::MultiHeadAttention<Scalar> reference_attention(const MultiHeadMMStep<Scalar>& step)
{
  constexpr std::string_view who = "check::reference_attention";
  const auto& energy = step.energy();
  const Eigen::Index d = energy.dim();
  const Eigen::Index width = energy.head(0).rank();
  const auto heads = Eigen::Index(energy.heads());
  if (heads * width != d)
    detail::fail(who, "the head blocks are " + std::to_string(heads) + " x " +
                          std::to_string(width) + " columns, expected equal blocks spanning d = " +
                          std::to_string(d));

  Matrix<Scalar> U(d, d);
  for (Eigen::Index h = 0; h < heads; ++h) {
    detail::require_cols(who, "head block", energy.head(std::size_t(h)).factor(), width,
                         "d_h of head 0");
    U.middleCols(h * width, width) = energy.head(std::size_t(h)).factor();
  }

  const Scalar alpha = step.params().step_size;
  reference::MultiHeadAttention<Scalar> layer;
  layer.W_Q = U;
  layer.W_K = U;
  layer.W_V = U;
  layer.W_O = alpha * U.transpose();
  layer.heads = heads;
  layer.scale = Scalar(1);
  layer.residual_weight = Scalar(1) - alpha;
  return layer;
}

/// The reference feed-forward block of a feed-forward step: `act(Y W_1 + b_1) W_2 + b_2` with
/// W_1 = (1 - alpha) I - alpha S, b_1 = alpha b, W_2 = I, no b_2 and no residual; act is ReLU
/// when the step uses it, the identity otherwise. Equal to the step for every input.
template <Real Scalar>
reference::FeedForward<Scalar> reference_feedforward(const FeedForwardStep<Scalar>& step)
{
  const auto& energy = step.energy();
  const Scalar alpha = step.params().step_size;
  const Eigen::Index d = energy.dim();

  reference::FeedForward<Scalar> block;
  block.W1 = (Scalar(1) - alpha) * Matrix<Scalar>::Identity(d, d) - alpha * energy.weight();
  block.b1 = alpha * energy.bias();
  block.W2 = Matrix<Scalar>::Identity(d, d);
  block.activation = step.params().relu ? reference::Activation::relu
                                        : reference::Activation::identity;
  block.residual_weight = Scalar(0);
  return block;
}

/// How far an MM attention step is from its reference layer at given tokens.
template <Real Scalar>
struct AttentionGap {
  /// ||MM(Y) - reference(Y)||_F / ||MM(Y)||_F.
  Scalar relative = 0;

  /// max_ij |MM(Y) - reference(Y)|.
  Scalar max_abs = 0;

  /// max_j ||y_j P|| / min_j ||y_j P|| - 1: zero exactly when the two layers coincide.
  Scalar norm_spread = 0;
};

/// Runs the MM step and its reference layer on Y (n x d) and measures the gap.
template <Real Scalar>
AttentionGap<Scalar> attention_gap(const MMAttentionStep<Scalar>& step,
                                   const ConstMatrixRef<Scalar>& Y)
{
  Matrix<Scalar> mm(Y.rows(), Y.cols());
  step.apply(Y, mm);
  const Matrix<Scalar> softmax = reference::self_attention<Scalar>(Y, reference_attention(step));

  AttentionGap<Scalar> gap;
  const Scalar scale = mm.norm();
  gap.relative = scale > Scalar(0) ? (mm - softmax).norm() / scale : (mm - softmax).norm();
  gap.max_abs = (mm - softmax).cwiseAbs().maxCoeff();
  const Vector<Scalar> norms = (Y * step.energy().factor()).rowwise().norm();
  gap.norm_spread = norms.maxCoeff() / norms.minCoeff() - Scalar(1);
  return gap;
}

}  // namespace unfold::check
