#pragma once

/// \file
/// The position-wise feed-forward block `act(Y W1 + b1) W2 + b2`, applied to each token row.
///
/// PyTorch conventions matched: `linear2(activation(linear1(x)))` of a TransformerEncoderLayer
/// in eval mode (dropout absent). A torch.nn.Linear stores `weight` as out x in and computes
/// `x weight^T + bias`, so `W1 = linear1.weight^T` (d x f) and `W2 = linear2.weight^T` (f x d).
/// The activations are PyTorch's: `relu`, `gelu` with `approximate='none'`
/// (0.5 x (1 + erf(x / sqrt 2))) and `approximate='tanh'`
/// (0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))).

#include "unfold/core/types.hpp"
#include "unfold/core/validate.hpp"
#include "unfold/reference/detail.hpp"

#include <Eigen/Core>

#include <cmath>
#include <numbers>
#include <string_view>
#include <vector>

namespace unfold::reference {

/// The activation between the two linear maps of a feed-forward block.
enum class Activation {
  identity,   ///< act(x) = x
  relu,       ///< max(x, 0)
  gelu_erf,   ///< x Phi(x) with the exact normal CDF (PyTorch's default GELU)
  gelu_tanh,  ///< the tanh approximation of GELU (PyTorch's approximate='tanh')
};

/// \brief The activation applied to one value.
template <Real Scalar>
Scalar activate(Activation activation, Scalar x)
{
  switch (activation) {
    case Activation::identity:
      return x;
    case Activation::relu:
      return x > Scalar(0) ? x : Scalar(0);
    case Activation::gelu_erf: {
      const Scalar inv_sqrt2 = std::numbers::sqrt2_v<Scalar> / Scalar(2);
      return Scalar(0.5) * x * (Scalar(1) + std::erf(x * inv_sqrt2));
    }
    case Activation::gelu_tanh: {
      const Scalar beta = std::numbers::sqrt2_v<Scalar> * std::numbers::inv_sqrtpi_v<Scalar>;
      const Scalar inner = beta * (x + Scalar(0.044715) * x * x * x);
      return Scalar(0.5) * x * (Scalar(1) + std::tanh(inner));
    }
  }
  return x;
}

/// \brief The activation applied entrywise to a matrix; Out has the shape of X.
template <class Derived>
  requires Real<typename Derived::Scalar>
Matrix<typename Derived::Scalar> activate(Activation activation,
                                          const Eigen::MatrixBase<Derived>& X)
{
  using Scalar = typename Derived::Scalar;
  return X.unaryExpr([activation](Scalar x) { return activate(activation, x); });
}

/// \brief Parameters of `act(Y W1 + b1) W2 + b2 + residual_weight Y`.
///
/// Shapes: `W1` d x f, `b1` 1 x f or empty, `W2` f x d_out, `b2` 1 x d_out or empty. A
/// residual needs d_out = d.
template <Real Scalar>
struct FeedForward {
  Matrix<Scalar> W1;     ///< d x f
  RowVector<Scalar> b1;  ///< 1 x f, or empty
  Matrix<Scalar> W2;     ///< f x d_out
  RowVector<Scalar> b2;  ///< 1 x d_out, or empty
  Activation activation = Activation::relu;
  Scalar residual_weight = Scalar(0);  ///< output += residual_weight * Y
};

namespace detail {

template <Real Scalar>
void validate(std::string_view who, const FeedForward<Scalar>& p)
{
  unfold::detail::require_nonempty(who, "W1", p.W1);
  unfold::detail::require_nonempty(who, "W2", p.W2);
  unfold::detail::require_rows(who, "W2", p.W2, p.W1.cols(), "columns of W1 (f)");
  unfold::detail::require_finite(who, "W1", p.W1);
  unfold::detail::require_finite(who, "W2", p.W2);
  require_optional_row(who, "b1", p.b1, p.W1.cols());
  require_optional_row(who, "b2", p.b2, p.W2.cols());
  require_finite_scalar(who, "residual_weight", p.residual_weight);
  if (p.residual_weight != Scalar(0))
    unfold::detail::require_cols(who, "W2", p.W2, p.W1.rows(), "rows of W1 (d, for the residual)");
}

}  // namespace detail

/// \brief The feed-forward block on each row of Y.
///
/// In: `Y` n x d, finite. Out: n x d_out, `act(Y W1 + b1) W2 + b2 + residual_weight Y`.
/// \throws std::invalid_argument on inconsistent shapes or non-finite entries.
template <Real Scalar>
Matrix<Scalar> feed_forward(const detail::ConstRef<Scalar>& Y, const FeedForward<Scalar>& params)
{
  constexpr std::string_view who = "unfold::reference::feed_forward";
  detail::validate(who, params);
  unfold::detail::require_nonempty(who, "Y", Y);
  unfold::detail::require_cols(who, "Y", Y, params.W1.rows(), "rows of W1 (d)");
  unfold::detail::require_finite(who, "Y", Y);

  // Hidden layer Z = act(Y W1 + b1), n x f.
  Matrix<Scalar> Z(Y.rows(), params.W1.cols());
  Z.noalias() = Y * params.W1;
  if (params.b1.size() != 0)
    Z.rowwise() += params.b1;
  Z = activate(params.activation, Z);

  // Output Z W2 + b2 + residual_weight Y, n x d_out.
  Matrix<Scalar> out(Y.rows(), params.W2.cols());
  out.noalias() = Z * params.W2;
  if (params.b2.size() != 0)
    out.rowwise() += params.b2;
  if (params.residual_weight != Scalar(0))
    out += params.residual_weight * Y;
  return out;
}

/// \brief Parameters from the two torch.nn.Linear layers of a feed-forward block.
///
/// In: `linear1_weight` f x d, `linear1_bias` 1 x f (or empty), `linear2_weight` d_out x f,
/// `linear2_bias` 1 x d_out (or empty). Sets `W1 = linear1_weight^T`, `W2 = linear2_weight^T`.
/// Call as `feed_forward_from_torch<double>(...)`.
template <Real Scalar>
FeedForward<Scalar> feed_forward_from_torch(const ConstMatrixRef<Scalar>& linear1_weight,
                                            const ConstMatrixRef<Scalar>& linear1_bias,
                                            const ConstMatrixRef<Scalar>& linear2_weight,
                                            const ConstMatrixRef<Scalar>& linear2_bias,
                                            Activation activation)
{
  constexpr std::string_view who = "unfold::reference::feed_forward_from_torch";
  detail::require_optional_row(who, "linear1_bias", linear1_bias, linear1_weight.rows());
  detail::require_optional_row(who, "linear2_bias", linear2_bias, linear2_weight.rows());

  FeedForward<Scalar> p;
  p.W1 = linear1_weight.transpose();
  p.W2 = linear2_weight.transpose();
  if (linear1_bias.size() != 0)
    p.b1 = linear1_bias;
  if (linear2_bias.size() != 0)
    p.b2 = linear2_bias;
  p.activation = activation;
  detail::validate(who, p);
  return p;
}

}  // namespace unfold::reference
