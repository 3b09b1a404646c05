#pragma once

/// \file
/// Layer normalisation over the last dimension (the d features of each token row).
///
/// PyTorch conventions matched (torch.nn.LayerNorm(d, eps)): the mean and the biased variance
/// (divided by d, not d - 1) of each row; eps inside the square root,
/// `y = (x - mean) / sqrt(var + eps) * gain + bias`; `gain` is PyTorch's `weight`. The variance
/// is computed in two passes, mean first and then the mean of squared deviations, so a row with
/// a large mean and a small spread keeps its variance in float. The mean itself gets one
/// correction pass, `mean += sum(x - mean) / d`, which makes it exact for a constant row: the
/// plain `sum(x) / d` can miss the value by an ulp, and dividing that error by sqrt(eps) turned
/// a constant row of 1e6 with d = 7 into outputs of about 1 in float.
///
/// The backward pass (`layer_norm_backward`, `RecordedLayerNorm`) is the vector-Jacobian
/// product of the same map, with x_hat = (x - mean) r and r = 1 / sqrt(var + eps):
/// `dx = r (g - mean(g) - x_hat mean(g x_hat))` per row with `g = dOut * gain`,
/// `dGain = sum_rows(dOut x_hat)`, `dBias = sum_rows(dOut)`.

#include "unfold/core/types.hpp"
#include "unfold/core/validate.hpp"
#include "unfold/reference/detail.hpp"

#include <Eigen/Core>

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unfold::reference {

/// \brief Parameters of a layer norm over d features. Empty `gain` and `bias` mean no affine
/// map (PyTorch's `elementwise_affine=False`); either may be given alone.
template <Real Scalar>
struct LayerNorm {
  RowVector<Scalar> gain;  ///< 1 x d (PyTorch's weight), or empty for ones
  RowVector<Scalar> bias;  ///< 1 x d, or empty for zeros
  Scalar eps = Scalar(1e-5);  ///< added to the variance inside the square root, > 0
};

/// \brief The gradients of a layer norm given the upstream gradient dOut: one entry per input
/// and parameter. A parameter that is absent (empty) gets an empty gradient.
template <Real Scalar>
struct LayerNormGradient {
  Matrix<Scalar> dY;        ///< n x d, with respect to the input
  RowVector<Scalar> dGain;  ///< 1 x d, or empty when the layer norm has no gain
  RowVector<Scalar> dBias;  ///< 1 x d, or empty when the layer norm has no bias
};

namespace detail {

template <Real Scalar>
void validate_layer_norm(std::string_view who, const ConstMatrixRef<Scalar>& Y,
                         const LayerNorm<Scalar>& params)
{
  unfold::detail::require_nonempty(who, "Y", Y);
  unfold::detail::require_finite(who, "Y", Y);
  require_optional_row(who, "gain", params.gain, Y.cols());
  require_optional_row(who, "bias", params.bias, Y.cols());
  unfold::detail::require_positive(who, "eps", params.eps);
}

/// The normalised rows x_hat (n x d) of Y and their standard deviations sqrt(var + eps) = 1 / r.
template <Real Scalar>
struct Normalised {
  Matrix<Scalar> x_hat;
  Vector<Scalar> std_dev;
};

template <Real Scalar>
Normalised<Scalar> normalise(const ConstMatrixRef<Scalar>& Y, Scalar eps)
{
  // Mean with one correction pass (exact for a constant row), then the variance from the
  // deviations: var = sum((x - mean)^2) / d.
  const Scalar d = Scalar(Y.cols());
  Vector<Scalar> mean = Y.rowwise().sum() / d;
  mean += (Y.colwise() - mean).rowwise().sum() / d;

  Normalised<Scalar> out;
  out.x_hat = Y.colwise() - mean;
  out.std_dev = ((out.x_hat.rowwise().squaredNorm() / d).array() + eps).sqrt().matrix();
  out.x_hat.array().colwise() /= out.std_dev.array();
  return out;
}

/// y = x_hat * gain + bias, feature by feature; consumes x_hat.
template <Real Scalar>
Matrix<Scalar> affine(Matrix<Scalar> x_hat, const LayerNorm<Scalar>& params)
{
  if (params.gain.size() != 0)
    x_hat.array().rowwise() *= params.gain.array();
  if (params.bias.size() != 0)
    x_hat.rowwise() += params.bias;
  return x_hat;
}

template <Real Scalar>
LayerNormGradient<Scalar> layer_norm_backward(std::string_view who, const Normalised<Scalar>& z,
                                              const LayerNorm<Scalar>& params,
                                              const ConstMatrixRef<Scalar>& dOut)
{
  unfold::detail::require_shape(who, "dOut", dOut, z.x_hat.rows(), z.x_hat.cols());
  unfold::detail::require_finite(who, "dOut", dOut);

  LayerNormGradient<Scalar> grad;
  if (params.gain.size() != 0)
    grad.dGain = (dOut.array() * z.x_hat.array()).colwise().sum().matrix();
  if (params.bias.size() != 0)
    grad.dBias = dOut.colwise().sum();

  // g = dOut * gain, then dx = r (g - mean(g) - x_hat mean(g x_hat)) row by row. For d = 1,
  // g - mean(g) and x_hat are exactly 0, so the gradient is exactly 0.
  const Scalar d = Scalar(dOut.cols());
  Matrix<Scalar> g = dOut;
  if (params.gain.size() != 0)
    g.array().rowwise() *= params.gain.array();
  const Vector<Scalar> g_mean = g.rowwise().sum() / d;
  const Vector<Scalar> gx_mean = (g.array() * z.x_hat.array()).rowwise().sum().matrix() / d;
  grad.dY = g.colwise() - g_mean;
  grad.dY -= gx_mean.asDiagonal() * z.x_hat;
  grad.dY.array().colwise() /= z.std_dev.array();
  return grad;
}

}  // namespace detail

/// \brief Normalises each row of Y (n x d) to zero mean and unit biased variance, then applies
/// the optional affine map.
///
/// In: `Y` n x d, finite. Out: n x d. A single feature (d = 1) gives exactly the bias (zero
/// without one), since the deviation from the mean is exactly zero; so does a constant row.
/// \throws std::invalid_argument on an empty or non-finite Y, a gain or bias not 1 x d, or
/// eps not finite and > 0.
template <Real Scalar>
Matrix<Scalar> layer_norm(const detail::ConstRef<Scalar>& Y, const LayerNorm<Scalar>& params)
{
  detail::validate_layer_norm<Scalar>("unfold::reference::layer_norm", Y, params);
  return detail::affine(detail::normalise<Scalar>(Y, params.eps).x_hat, params);
}

/// \brief The vector-Jacobian product of `layer_norm(Y, params)` with the upstream gradient
/// dOut: the gradients of `sum(dOut .* layer_norm(Y))` with respect to Y, gain and bias.
///
/// In: `Y` n x d and `params` as for `layer_norm`, `dOut` n x d, finite. Out: dY (n x d), dGain
/// and dBias (1 x d, empty where the parameter is absent). A single feature gives dY = 0 and
/// dGain = 0 exactly; a constant row gives finite gradients (r = 1 / sqrt(eps) there).
/// \throws std::invalid_argument as `layer_norm` does, and on a dOut that is not n x d or holds a
/// non-finite entry.
template <Real Scalar>
LayerNormGradient<Scalar> layer_norm_backward(const detail::ConstRef<Scalar>& Y,
                                              const LayerNorm<Scalar>& params,
                                              const detail::ConstRef<Scalar>& dOut)
{
  constexpr std::string_view who = "unfold::reference::layer_norm_backward";
  detail::validate_layer_norm<Scalar>(who, Y, params);
  return detail::layer_norm_backward<Scalar>(who, detail::normalise<Scalar>(Y, params.eps),
                                             params, dOut);
}

/// \brief A layer norm that records its forward pass so that `backward` needs no recomputation.
///
/// Call order: `forward(Y)`, then any number of `backward(dOut)` calls, which differentiate
/// at the Y of the last successful forward. `backward` before any forward, or after a forward
/// that threw, throws `std::logic_error`. Not safe to share between threads while forward runs.
template <Real Scalar>
class RecordedLayerNorm {
 public:
  explicit RecordedLayerNorm(LayerNorm<Scalar> params) : params_(std::move(params)) {}

  /// `layer_norm(Y, params())`, recording x_hat and r for the backward pass.
  /// \throws std::invalid_argument as `layer_norm` does; nothing is recorded then.
  Matrix<Scalar> forward(const ConstMatrixRef<Scalar>& Y)
  {
    record_.reset();
    detail::validate_layer_norm<Scalar>("unfold::reference::RecordedLayerNorm::forward", Y,
                                        params_);
    record_ = detail::normalise<Scalar>(Y, params_.eps);
    return detail::affine(record_->x_hat, params_);
  }

  /// The vector-Jacobian product at the recorded input; see `layer_norm_backward`.
  /// \throws std::logic_error when no forward pass is recorded; std::invalid_argument on a dOut
  /// that is not n x d or not finite.
  [[nodiscard]] LayerNormGradient<Scalar> backward(const ConstMatrixRef<Scalar>& dOut) const
  {
    constexpr std::string_view who = "unfold::reference::RecordedLayerNorm::backward";
    if (!record_)
      throw std::logic_error(std::string(who) +
                             ": no forward pass is recorded; call forward(Y) first");
    return detail::layer_norm_backward<Scalar>(who, *record_, params_, dOut);
  }

  /// Whether a forward pass is recorded, i.e. whether `backward` may be called.
  [[nodiscard]] bool recorded() const { return record_.has_value(); }

  /// Drops the recorded forward pass.
  void clear() { record_.reset(); }

  [[nodiscard]] const LayerNorm<Scalar>& params() const { return params_; }

 private:
  LayerNorm<Scalar> params_;
  std::optional<detail::Normalised<Scalar>> record_;
};

/// \brief Batch of layer norms, one per sequence; each entry n_b x d.
template <Real Scalar>
std::vector<Matrix<Scalar>> layer_norm(const std::vector<Matrix<Scalar>>& Y,
                                       const LayerNorm<Scalar>& params)
{
  std::vector<Matrix<Scalar>> out;
  out.reserve(Y.size());
  for (const Matrix<Scalar>& Y_b : Y)
    out.push_back(layer_norm<Scalar>(Y_b, params));
  return out;
}

}  // namespace unfold::reference
