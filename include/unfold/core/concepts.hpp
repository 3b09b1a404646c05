#pragma once

/// \file
/// The Energy concept: what a type must offer to be descended by the steps of this library.

#include "types.hpp"

#include <concepts>

namespace unfold {

namespace detail {

template <class E>
concept HasScalar = requires { typename E::Scalar; } && Real<typename E::Scalar>;

template <class E>
concept HasValue = requires(const E& e, const ConstMatrixRef<typename E::Scalar>& Y) {
  { e.value(Y) } -> std::convertible_to<typename E::Scalar>;
};

template <class E>
concept HasGradient = requires(const E& e, const ConstMatrixRef<typename E::Scalar>& Y,
                               MatrixRef<typename E::Scalar> G) {
  e.gradient(Y, G);
};

template <class E>
concept HasValueAndGradient = requires(const E& e, const ConstMatrixRef<typename E::Scalar>& Y,
                                       MatrixRef<typename E::Scalar> G) {
  { e.value_and_gradient(Y, G) } -> std::convertible_to<typename E::Scalar>;
};

template <class E>
concept HasDim = requires(const E& e) {
  { e.dim() } -> std::convertible_to<Eigen::Index>;
};

}  // namespace detail

/// An energy on token matrices Y (n x d).
///
/// A model publishes `using Scalar = float` (or double) and offers
/// - `Scalar value(Y)`,
/// - `void gradient(Y, G)`, writing dE/dY into caller-owned n x d storage `G`,
/// - `Scalar value_and_gradient(Y, G)`, the fused hot path,
/// - `Eigen::Index dim()`, the token width d it accepts.
template <class E>
concept Energy = detail::HasScalar<E> && detail::HasValue<E> && detail::HasGradient<E> &&
                 detail::HasValueAndGradient<E> && detail::HasDim<E>;

/// Names the first missing requirement when `E` does not model Energy.
///
/// Call it as `static_assert(check_energy<E>())` in templates that take an energy, so that a
/// mistake reads as a sentence rather than as a page of substitution failures.
template <class E>
consteval bool check_energy()
{
  static_assert(detail::HasScalar<E>, "unfold: an Energy must publish `using Scalar = float` "
                                      "or `double`");
  if constexpr (detail::HasScalar<E>) {
    static_assert(detail::HasValue<E>, "unfold: an Energy needs `Scalar value(Y) const`");
    static_assert(detail::HasGradient<E>,
                  "unfold: an Energy needs `void gradient(Y, G) const` writing into G");
    static_assert(detail::HasValueAndGradient<E>,
                  "unfold: an Energy needs `Scalar value_and_gradient(Y, G) const`");
    static_assert(detail::HasDim<E>, "unfold: an Energy needs `Eigen::Index dim() const`");
  }
  return true;
}

}  // namespace unfold
