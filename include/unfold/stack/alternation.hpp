#pragma once

/// \file
/// Sufficient conditions under which alternating steps do not raise the summed energy
/// (MATH.md section 3). They are derived conditions, not the paper's theorem; the tests check
/// them on random convex quadratics.
///
/// Setting: f, g convex, h = f + g mu_h-strongly convex and L_h-smooth, f L_f-smooth, with
/// minimisers y_f* of f and y_h* of h. Points are vectors (one token, or a flattened matrix).

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <cmath>
#include <sstream>

namespace unfold {

/// ||y - y_f*|| / ||y - y_h*|| (+infinity at y = y_h* != y_f*, 0 at y = y_f*).
template <Real Scalar>
Scalar apollonius_ratio(const Vector<Scalar>& y, const Vector<Scalar>& y_f,
                        const Vector<Scalar>& y_h)
{
  constexpr std::string_view who = "apollonius_ratio";
  detail::require_shape(who, "y_f", y_f, y.rows(), 1);
  detail::require_shape(who, "y_h", y_h, y.rows(), 1);
  const Scalar to_f = (y - y_f).norm();
  const Scalar to_h = (y - y_h).norm();
  if (to_f == Scalar(0))
    return Scalar(0);
  return to_h > Scalar(0) ? to_f / to_h : std::numeric_limits<Scalar>::infinity();
}

/// The Apollonius test: ratio <= mu_h / L_f. Inside it, a gradient step on g with step size
/// alpha <= 1 / L_h does not raise h.
template <Real Scalar>
bool apollonius_test(const Vector<Scalar>& y, const Vector<Scalar>& y_f,
                     const Vector<Scalar>& y_h, Scalar mu_h, Scalar L_f)
{
  detail::require_positive("apollonius_test", "mu_h", mu_h);
  detail::require_positive("apollonius_test", "L_f", L_f);
  return apollonius_ratio(y, y_f, y_h) <= mu_h / L_f;
}

/// The Apollonius circle {p : ||p - a|| = C ||p - b||}, C != 1: centre (a - C^2 b)/(1 - C^2)
/// and radius C ||a - b|| / |1 - C^2|. For C < 1 the region ratio <= C is the disc inside it,
/// for C > 1 the outside.
template <Real Scalar>
struct ApolloniusCircle {
  Vector<Scalar> centre;
  Scalar radius;
};

template <Real Scalar>
ApolloniusCircle<Scalar> apollonius_circle(const Vector<Scalar>& a, const Vector<Scalar>& b,
                                           Scalar C)
{
  constexpr std::string_view who = "apollonius_circle";
  detail::require_shape(who, "b", b, a.rows(), 1);
  detail::require_positive(who, "C", C);
  if (C == Scalar(1))
    detail::fail(who, "C = 1, expected C != 1 (the locus is a line, not a circle)");
  const Scalar denominator = Scalar(1) - C * C;
  return {(a - C * C * b) / denominator, C * (a - b).norm() / std::abs(denominator)};
}

/// div(x) = sum_k min(0, x_k^2 - xi_k^2) / ||xi||^2 in [-1, 0] for a step xi from x >= 0 (0
/// for xi = 0). It bounds how far ReLU moves the plain step:
/// ||ReLU(x - xi) - (x - xi)||^2 <= -div(x) ||xi||^2.
template <Real Scalar>
Scalar relu_divergence(const Vector<Scalar>& x, const Vector<Scalar>& xi)
{
  detail::require_shape("relu_divergence", "xi", xi, x.rows(), 1);
  const Scalar step = xi.squaredNorm();
  if (step == Scalar(0))
    return Scalar(0);
  return (x.array().square() - xi.array().square()).min(Scalar(0)).sum() / step;
}

/// The region and step size of the ReLU condition for a kappa < 1/4: where div >= -kappa,
/// ||y - y_f*|| <= radius_factor ||y - y_h*|| and alpha <= max_step_size, the ReLU step on g
/// does not raise h.
template <Real Scalar>
struct ReluCondition {
  Scalar radius_factor;  ///< (1 - 2 sqrt(kappa)) mu_h / L_f
  Scalar max_step_size;  ///< 1 / (L_h (1 + sqrt(kappa))^2)
};

template <Real Scalar>
ReluCondition<Scalar> relu_condition(Scalar kappa, Scalar mu_h, Scalar L_f, Scalar L_h)
{
  constexpr std::string_view who = "relu_condition";
  if (!(kappa >= Scalar(0) && kappa < Scalar(0.25))) {
    std::ostringstream out;
    out << "kappa = " << kappa << ", expected 0 <= kappa < 1/4";
    detail::fail(who, out.str());
  }
  detail::require_positive(who, "mu_h", mu_h);
  detail::require_positive(who, "L_f", L_f);
  detail::require_positive(who, "L_h", L_h);
  const Scalar root = std::sqrt(kappa);
  return {(Scalar(1) - Scalar(2) * root) * mu_h / L_f,
          Scalar(1) / (L_h * (Scalar(1) + root) * (Scalar(1) + root))};
}

}  // namespace unfold
