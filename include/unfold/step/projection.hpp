#pragma once

/// \file
/// Layer norm as a projection (MATH.md 1.3): Euclidean, onto {sum(y) = 0, ||y||^2 = d} per
/// token, and metric, to equal ||y_j P|| over the tokens.

#include "../energy/zero.hpp"
#include "descent_bound.hpp"

#include <cmath>
#include <optional>
#include <string_view>

namespace unfold {

/// Layer norm without its affine part, as the Euclidean projection of every token onto
/// { y : sum(y) = 0, ||y||^2 = d }: centre, then rescale to norm sqrt(d).
///
/// A token equal to its own mean (a constant row) has no nearest point on that set; it is
/// mapped to the zero row, which is what layer norm with eps > 0 returns for it. With d = 1
/// every token is constant, so every token maps to 0.
///
/// \param Y tokens, n x d. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar>
void layer_norm_projection(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout)
{
  constexpr std::string_view who = "layer_norm_projection";
  detail::require_nonempty(who, "Y", Y);
  detail::require_finite(who, "Y", Y);
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());

  const Scalar radius = std::sqrt(Scalar(Y.cols()));
  for (Eigen::Index j = 0; j < Y.rows(); ++j) {
    const Scalar mean = Y.row(j).mean();
    const RowVector<Scalar> centred = Y.row(j).array() - mean;
    const Scalar norm = centred.norm();
    if (norm > Scalar(0))
      Yout.row(j) = (radius / norm) * centred;
    else
      Yout.row(j).setZero();
  }
}

/// Rescales every token so that ||y_j P|| = r for all j (MATH.md 1.3): after it, plain
/// softmax attention with metric P P^T is the MM step. r defaults to the root mean square of
/// the current norms ||y_j P||, so the step changes the tokens' spread, not their scale. A
/// token with y_j P = 0 cannot be rescaled onto the set and is left as it is.
///
/// \param P metric factor, d x k. \param Yout output, n x d; may be `Y` itself.
template <Real Scalar>
void metric_norm_projection(const ConstMatrixRef<Scalar>& P, const ConstMatrixRef<Scalar>& Y,
                            MatrixRef<Scalar> Yout, std::optional<Scalar> radius = {})
{
  constexpr std::string_view who = "metric_norm_projection";
  detail::require_nonempty(who, "P", P);
  detail::require_finite(who, "P", P);
  detail::require_tokens(who, Y, P.rows());
  detail::require_shape(who, "Yout", Yout, Y.rows(), Y.cols());
  if (radius)
    detail::require_positive(who, "radius", *radius);

  const Vector<Scalar> norms = (Y * P).rowwise().norm();
  const Scalar r = radius ? *radius : std::sqrt(norms.squaredNorm() / Scalar(Y.rows()));
  for (Eigen::Index j = 0; j < Y.rows(); ++j) {
    if (norms(j) > Scalar(0) && r > Scalar(0))
      Yout.row(j) = (r / norms(j)) * Y.row(j);
    else
      Yout.row(j) = Y.row(j);
  }
}

/// Which projection a ProjectionStep applies.
enum class Projection {
  layer_norm,  ///< Euclidean: centre and rescale every token to norm sqrt(d)
  metric_norm  ///< equal ||y_j P|| for all tokens
};

/// A projection as a step of a layer. Its energy is the zero energy: a projection descends
/// nothing of its own, and the theory does not promise that it lowers the other components
/// (MATH.md 1.3), so the trace measures it (the entry after it has status energy_rose when
/// it raised the layer's total).
template <Real Scalar_>
class ProjectionStep {
public:
  using Scalar = Scalar_;
  using EnergyType = ZeroEnergy<Scalar>;

  /// The Euclidean layer-norm projection on tokens of width d.
  explicit ProjectionStep(Eigen::Index d) : energy_(d), kind_(Projection::layer_norm) {}

  /// The metric projection for the factor P (d x k), to radius r (default: keep the RMS).
  explicit ProjectionStep(Matrix<Scalar> P, std::optional<Scalar> radius = {})
      : energy_(P.rows()), factor_(std::move(P)), radius_(radius), kind_(Projection::metric_norm)
  {
    detail::require_finite("ProjectionStep", "P", factor_);
    if (radius_)
      detail::require_positive("ProjectionStep", "radius", *radius_);
  }

  std::string_view name() const
  {
    return kind_ == Projection::layer_norm ? "layer_norm" : "metric_norm";
  }
  const EnergyType& energy() const { return energy_; }
  Projection kind() const { return kind_; }

  void apply(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> Yout) const
  {
    if (kind_ == Projection::layer_norm)
      layer_norm_projection<Scalar>(Y, Yout);
    else
      metric_norm_projection<Scalar>(factor_, Y, Yout, radius_);
  }

  /// A projection has no descent guarantee (max_step_size = 0).
  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>&) const
  {
    return {1, 0, "projection: no descent guarantee for the other energies"};
  }

private:
  EnergyType energy_;
  Matrix<Scalar> factor_;
  std::optional<Scalar> radius_;
  Projection kind_;
};

}  // namespace unfold
