#pragma once

/// \file
/// Layer normalisation over the last dimension (the d features of each token row).
///
/// PyTorch conventions matched (torch.nn.LayerNorm(d, eps)): the mean and the biased variance
/// (divided by d, not d - 1) of each row; eps inside the square root,
/// `y = (x - mean) / sqrt(var + eps) * gain + bias`; `gain` is PyTorch's `weight`. The variance
/// is computed in two passes, mean first and then the mean of squared deviations, so a row with
/// a large mean and a small spread keeps its variance in float.

#include "unfold/core/types.hpp"
#include "unfold/core/validate.hpp"
#include "unfold/reference/detail.hpp"

#include <Eigen/Core>

#include <cmath>
#include <string_view>
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

/// \brief Normalises each row of Y (n x d) to zero mean and unit biased variance, then applies
/// the optional affine map.
///
/// In: `Y` n x d, finite. Out: n x d. A single feature (d = 1) gives exactly the bias (zero
/// without one), since the deviation from the mean is exactly zero.
/// \throws std::invalid_argument on an empty or non-finite Y, a gain or bias not 1 x d, or
/// eps not finite and > 0.
template <Real Scalar>
Matrix<Scalar> layer_norm(const detail::ConstRef<Scalar>& Y, const LayerNorm<Scalar>& params)
{
  constexpr std::string_view who = "unfold::reference::layer_norm";
  unfold::detail::require_nonempty(who, "Y", Y);
  unfold::detail::require_finite(who, "Y", Y);
  detail::require_optional_row(who, "gain", params.gain, Y.cols());
  detail::require_optional_row(who, "bias", params.bias, Y.cols());
  unfold::detail::require_positive(who, "eps", params.eps);

  // Two passes per row: mean = sum(x) / d, then var = sum((x - mean)^2) / d.
  const Scalar d = Scalar(Y.cols());
  Matrix<Scalar> out = Y.colwise() - Y.rowwise().sum() / d;
  const Eigen::Array<Scalar, Eigen::Dynamic, 1> std_dev =
      ((out.rowwise().squaredNorm() / d).array() + params.eps).sqrt();
  out.array().colwise() /= std_dev;

  // Affine map, y = x_hat * gain + bias, feature by feature.
  if (params.gain.size() != 0)
    out.array().rowwise() *= params.gain.array();
  if (params.bias.size() != 0)
    out.rowwise() += params.bias;
  return out;
}

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
