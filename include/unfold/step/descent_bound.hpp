#pragma once

/// \file
/// What the theory guarantees for a step at its current point.

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <limits>
#include <string_view>

namespace unfold {

/// The largest step size for which a result of MATH.md proves that a step does not raise its
/// energy at the current point, beside the step size in use.
template <Real Scalar>
struct DescentBound {
  /// The step size in use.
  Scalar step_size = 0;

  /// The proven bound; +infinity when every positive step size is safe, 0 when the theory
  /// proves nothing for this step at this point.
  Scalar max_step_size = 0;

  /// The result the bound comes from, in words.
  std::string_view rule;

  /// Whether the step size in use is inside the proven bound.
  bool holds() const { return step_size > Scalar(0) && step_size <= max_step_size; }

  static constexpr Scalar unbounded() { return std::numeric_limits<Scalar>::infinity(); }
};

/// Parameters shared by the steps: the step size alpha, also the residual weight 1 - alpha of
/// the attention steps.
template <Real Scalar>
struct StepParams {
  Scalar step_size = 1;

  /// Throws std::invalid_argument naming `who` unless step_size is finite and > 0.
  void validate(std::string_view who) const
  {
    detail::require_positive(who, "step_size", step_size);
  }
};

}  // namespace unfold
