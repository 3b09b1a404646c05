#pragma once

/// \file
/// The paper's model in two variants: the consistent one, whose every step descends the
/// energy it is traced against, and the authors' one, which reproduces the numbers of the
/// authors' public code (MATH.md section 4).
///
/// Differences of the authors' model from the mathematics, each reproduced here on purpose:
/// - Its attention energy uses P = W, so the metric is W W^T, but its forward pass is
///   row_softmax(Y W^T W Y^T) Y, with the metric W^T W (factor W^T). The two agree only when
///   W is normal (W W^T = W^T W).
/// - Its forward pass has no key-norm correction (plain softmax), so it is not the MM step
///   unless the norms ||y_j W^T|| are equal; there is no layer norm to make them so.
/// - Its energy keeps lambda = 1, although no step accounts for the norm term.
/// Shared by both variants: S = W_F W_F^T with eigenvalues clamped to [0, 0.95], the
/// feed-forward forward pass Y (-S) + 1 b (step size 1), optionally followed by ReLU, and
/// Xavier-normal W, W_F and b. Step size 1 for attention means no residual connection.
///
/// The consistent variant uses P = W for both energy and step, the key-norm-corrected softmax
/// (the Jacobi MM step) and lambda = 0.

#include "../core/random.hpp"
#include "../energy/spectral_clamp.hpp"
#include "../stack/stack.hpp"
#include "../step/feedforward.hpp"
#include "../step/mm_attention.hpp"
#include "../step/softmax_attention.hpp"

#include <cstdint>
#include <random>

namespace unfold::compat {

/// The parameters of one weight-tied layer of the paper's model.
template <Real Scalar>
struct PaperWeights {
  Matrix<Scalar> W;    ///< attention weight, d x d
  Matrix<Scalar> W_F;  ///< feed-forward factor, d x d
  RowVector<Scalar> b; ///< feed-forward bias, 1 x d

  /// Xavier-normal W, W_F and b from one seeded generator, drawn in that order.
  static PaperWeights xavier(Eigen::Index d, std::uint64_t seed)
  {
    std::mt19937_64 rng(seed);
    PaperWeights w;
    w.W = xavier_normal<Scalar>(d, d, rng);
    w.W_F = xavier_normal<Scalar>(d, d, rng);
    w.b = xavier_normal<Scalar>(1, d, rng);
    return w;
  }

  /// S = W_F W_F^T with its eigenvalues clamped to [0, 0.95].
  Matrix<Scalar> feedforward_weight() const
  {
    const Matrix<Scalar> gram = W_F * W_F.transpose();
    return spectral_clamp(Scalar(0.5) * (gram + gram.transpose()), Scalar(0), Scalar(0.95));
  }
};

template <Real Scalar>
using ConsistentLayer = Layer<MMAttentionStep<Scalar>, FeedForwardStep<Scalar>>;

template <Real Scalar>
using AuthorsLayer = Layer<SoftmaxAttentionStep<Scalar>, FeedForwardStep<Scalar>>;

/// Attention: Jacobi MM step on E_att with P = W, lambda = 0, step size 1. Feed-forward: the
/// step of size 1 on E_ffn with S = clamp(W_F W_F^T, 0, 0.95), with or without ReLU.
template <Real Scalar>
ConsistentLayer<Scalar> consistent_layer(const PaperWeights<Scalar>& w, bool relu)
{
  AttentionEnergy<Scalar> attention(w.W, Scalar(0));
  FeedForwardEnergy<Scalar> feedforward(w.feedforward_weight(), w.b);
  return ConsistentLayer<Scalar>(MMAttentionStep<Scalar>(std::move(attention)),
                                 FeedForwardStep<Scalar>(std::move(feedforward), {1, relu}));
}

/// Attention: row_softmax(Y W^T W Y^T) Y, traced against E_att with P = W and lambda = 1.
/// Feed-forward: as in consistent_layer.
template <Real Scalar>
AuthorsLayer<Scalar> authors_layer(const PaperWeights<Scalar>& w, bool relu)
{
  AttentionEnergy<Scalar> attention(w.W, Scalar(1));
  FeedForwardEnergy<Scalar> feedforward(w.feedforward_weight(), w.b);
  return AuthorsLayer<Scalar>(
      SoftmaxAttentionStep<Scalar>(std::move(attention), w.W.transpose(), {1}),
      FeedForwardStep<Scalar>(std::move(feedforward), {1, relu}));
}

}  // namespace unfold::compat
