#pragma once

/// \file
/// A sum of energies that keeps its components, so that a trace can report each.

#include "../core/concepts.hpp"
#include "../core/validate.hpp"

#include <array>
#include <string_view>
#include <tuple>

namespace unfold {

/// E(Y) = E_1(Y) + ... + E_m(Y), all of the same Scalar and token width d.
template <Energy... Energies>
  requires(sizeof...(Energies) >= 1)
class SumEnergy {
  using First = std::tuple_element_t<0, std::tuple<Energies...>>;

public:
  using Scalar = typename First::Scalar;
  static constexpr std::size_t size = sizeof...(Energies);

  static_assert((std::same_as<typename Energies::Scalar, Scalar> && ...),
                "unfold: SumEnergy needs components of one Scalar type");

  explicit SumEnergy(Energies... parts) : parts_(std::move(parts)...)
  {
    const Eigen::Index d = std::get<0>(parts_).dim();
    std::apply(
        [d](const auto&... e) {
          if (((e.dim() != d) || ...))
            detail::fail("SumEnergy", "components have different token widths d");
        },
        parts_);
  }

  static constexpr std::string_view name() { return "sum"; }

  Eigen::Index dim() const { return std::get<0>(parts_).dim(); }

  template <std::size_t I>
  const auto& component() const { return std::get<I>(parts_); }

  /// The value of each component at Y, in order.
  std::array<Scalar, size> components(const ConstMatrixRef<Scalar>& Y) const
  {
    return std::apply([&](const auto&... e) { return std::array<Scalar, size>{e.value(Y)...}; },
                      parts_);
  }

  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    return std::apply([&](const auto&... e) { return (e.value(Y) + ...); }, parts_);
  }

  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    detail::require_shape("SumEnergy::value_and_gradient", "G", G, Y.rows(), Y.cols());
    Matrix<Scalar> part(Y.rows(), Y.cols());
    G.setZero();
    return std::apply(
        [&](const auto&... e) {
          Scalar total = 0;
          ((total += e.value_and_gradient(Y, part), G += part), ...);
          return total;
        },
        parts_);
  }

private:
  std::tuple<Energies...> parts_;
};

}  // namespace unfold
