#pragma once

/// \file
/// The Transformer encoder layer and stack of torch.nn.TransformerEncoderLayer and
/// torch.nn.TransformerEncoder, in eval mode (dropout absent), one sequence per call.
///
/// PyTorch conventions matched:
/// - post-norm (`norm_first=False`): `x = LN1(x + SA(x)); x = LN2(x + FF(x))`;
///   pre-norm (`norm_first=True`): `x = x + SA(LN1(x)); x = x + FF(LN2(x))`;
/// - `SA` is the layer's `self_attn` (see attention.hpp for the in_proj_weight map and mask
///   polarity), `FF` is `linear2(activation(linear1(x)))` (see feedforward.hpp), `LN1`, `LN2`
///   are `norm1`, `norm2` (see layer_norm.hpp);
/// - the layer's `src_mask` and `src_key_padding_mask` reach every self-attention of the stack;
/// - the stack's optional final norm is TransformerEncoder's `norm` argument, applied after
///   the last layer.
/// As in attention.hpp, a token whose keys are all masked gets a zero attention update where
/// PyTorch gives NaN.

#include "unfold/core/types.hpp"
#include "unfold/core/validate.hpp"
#include "unfold/reference/attention.hpp"
#include "unfold/reference/detail.hpp"
#include "unfold/reference/feedforward.hpp"
#include "unfold/reference/layer_norm.hpp"

#include <Eigen/Core>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace unfold::reference {

/// \brief One encoder layer: self-attention and feed-forward blocks, each with a residual
/// connection and a layer norm placed after (post-norm) or before (pre-norm) it.
///
/// The blocks must map d to d and carry no residual of their own (`residual_weight = 0`): the
/// layer adds the residual connections.
template <Real Scalar>
struct EncoderLayer {
  MultiHeadAttention<Scalar> attention;  ///< self_attn, d -> d
  FeedForward<Scalar> feed_forward;      ///< linear1, activation, linear2, d -> d
  LayerNorm<Scalar> norm1;               ///< before or after the attention block
  LayerNorm<Scalar> norm2;               ///< before or after the feed-forward block
  bool norm_first = false;               ///< true = pre-norm, PyTorch's norm_first
};

/// \brief A stack of encoder layers with an optional final layer norm.
template <Real Scalar>
struct Encoder {
  std::vector<EncoderLayer<Scalar>> layers;  ///< applied in order
  std::optional<LayerNorm<Scalar>> final_norm;  ///< TransformerEncoder's norm, if any
};

namespace detail {

template <Real Scalar>
void validate(std::string_view who, std::string_view layer_name, const EncoderLayer<Scalar>& l)
{
  const std::string name(layer_name);
  if (l.attention.residual_weight != Scalar(0))
    unfold::detail::fail(who, name + ".attention.residual_weight = " +
                                  std::to_string(l.attention.residual_weight) +
                                  ", expected 0 (the layer adds the residual)");
  if (l.feed_forward.residual_weight != Scalar(0))
    unfold::detail::fail(who, name + ".feed_forward.residual_weight = " +
                                  std::to_string(l.feed_forward.residual_weight) +
                                  ", expected 0 (the layer adds the residual)");

  const Eigen::Index d = l.attention.W_Q.rows();
  unfold::detail::require_cols(who, name + ".attention.W_O", l.attention.W_O, d,
                               "rows of W_Q (d)");
  unfold::detail::require_rows(who, name + ".feed_forward.W1", l.feed_forward.W1, d,
                               "rows of W_Q (d)");
  unfold::detail::require_cols(who, name + ".feed_forward.W2", l.feed_forward.W2, d,
                               "rows of W_Q (d)");
}

}  // namespace detail

/// \brief One encoder layer on a sequence Y (n x d), as TransformerEncoderLayer.forward with
/// `src_mask` and `src_key_padding_mask` given by `masks` (n x n and n entries).
///
/// Out: n x d. \throws std::invalid_argument on inconsistent shapes, masks of the wrong size, a
/// block with its own residual, or non-finite input.
template <Real Scalar>
Matrix<Scalar> encoder_layer(const detail::ConstRef<Scalar>& Y, const EncoderLayer<Scalar>& layer,
                             const Masks<Scalar>& masks = {})
{
  constexpr std::string_view who = "unfold::reference::encoder_layer";
  detail::validate(who, "layer", layer);
  unfold::detail::require_tokens(who, Y, layer.attention.W_Q.rows());

  Matrix<Scalar> x = Y;
  if (layer.norm_first) {
    // Pre-norm: x = x + SA(LN1(x)); x = x + FF(LN2(x)).
    x += self_attention<Scalar>(layer_norm<Scalar>(x, layer.norm1), layer.attention, masks);
    x += feed_forward<Scalar>(layer_norm<Scalar>(x, layer.norm2), layer.feed_forward);
    return x;
  }

  // Post-norm: x = LN1(x + SA(x)); x = LN2(x + FF(x)).
  x = layer_norm<Scalar>(x + self_attention<Scalar>(x, layer.attention, masks), layer.norm1);
  x = layer_norm<Scalar>(x + feed_forward<Scalar>(x, layer.feed_forward), layer.norm2);
  return x;
}

/// \brief The encoder stack on a sequence Y (n x d), as TransformerEncoder.forward: every layer
/// in order with the same masks, then the final norm if set.
///
/// Out: n x d. \throws std::invalid_argument as `encoder_layer`, or if there are no layers.
template <Real Scalar>
Matrix<Scalar> encoder(const detail::ConstRef<Scalar>& Y, const Encoder<Scalar>& stack,
                       const Masks<Scalar>& masks = {})
{
  constexpr std::string_view who = "unfold::reference::encoder";
  if (stack.layers.empty())
    unfold::detail::fail(who, "stack.layers is empty, expected at least one layer");
  for (std::size_t l = 0; l < stack.layers.size(); ++l)
    detail::validate(who, "stack.layers[" + std::to_string(l) + "]", stack.layers[l]);

  Matrix<Scalar> x = Y;
  for (const EncoderLayer<Scalar>& layer : stack.layers)
    x = encoder_layer<Scalar>(x, layer, masks);

  if (stack.final_norm)
    x = layer_norm<Scalar>(x, *stack.final_norm);
  return x;
}

/// \brief Batch of encoder-layer calls, one per sequence; `masks` empty or one per sequence.
template <Real Scalar>
std::vector<Matrix<Scalar>> encoder_layer(const std::vector<Matrix<Scalar>>& Y,
                                          const EncoderLayer<Scalar>& layer,
                                          const std::vector<Masks<Scalar>>& masks = {})
{
  if (!masks.empty())
    detail::require_batch_size("unfold::reference::encoder_layer", "masks", masks, Y.size());
  std::vector<Matrix<Scalar>> out;
  out.reserve(Y.size());
  for (std::size_t b = 0; b < Y.size(); ++b)
    out.push_back(encoder_layer<Scalar>(Y[b], layer, masks.empty() ? Masks<Scalar>{} : masks[b]));
  return out;
}

/// \brief Batch of encoder-stack calls, one per sequence; `masks` empty or one per sequence.
template <Real Scalar>
std::vector<Matrix<Scalar>> encoder(const std::vector<Matrix<Scalar>>& Y,
                                    const Encoder<Scalar>& stack,
                                    const std::vector<Masks<Scalar>>& masks = {})
{
  if (!masks.empty())
    detail::require_batch_size("unfold::reference::encoder", "masks", masks, Y.size());
  std::vector<Matrix<Scalar>> out;
  out.reserve(Y.size());
  for (std::size_t b = 0; b < Y.size(); ++b)
    out.push_back(encoder<Scalar>(Y[b], stack, masks.empty() ? Masks<Scalar>{} : masks[b]));
  return out;
}

}  // namespace unfold::reference
