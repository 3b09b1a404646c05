#pragma once

/// \file
/// Internal helpers shared by the reference Transformer headers: the input type that takes its
/// scalar from a parameter struct, and argument checks the core validators do not cover.

#include "unfold/core/types.hpp"
#include "unfold/core/validate.hpp"

#include <Eigen/Core>

#include <cmath>
#include <sstream>
#include <string_view>
#include <type_traits>

namespace unfold::reference::detail {

/// `Eigen::Ref<const Matrix<Scalar>>` in a non-deduced context: `Scalar` is taken from the
/// parameter struct of the call, so any dense expression with that scalar binds to it.
template <Real Scalar>
using ConstRef = std::type_identity_t<ConstMatrixRef<Scalar>>;

/// Throws unless `value` is a positive multiple of `divisor`, e.g. "d = 6 is not divisible by
/// heads = 4".
inline void require_divisible(std::string_view who, std::string_view arg, Eigen::Index value,
                              std::string_view divisor_name, Eigen::Index divisor)
{
  if (divisor < 1) {
    std::ostringstream out;
    out << divisor_name << " = " << divisor << ", expected at least 1";
    unfold::detail::fail(who, out.str());
  }
  if (value % divisor != 0) {
    std::ostringstream out;
    out << arg << " = " << value << " is not divisible by " << divisor_name << " = " << divisor;
    unfold::detail::fail(who, out.str());
  }
}

/// Throws unless `v` is empty (no bias) or a 1 x `cols` row.
template <class Derived>
void require_optional_row(std::string_view who, std::string_view arg,
                          const Eigen::DenseBase<Derived>& v, Eigen::Index cols)
{
  if (v.size() == 0)
    return;
  unfold::detail::require_shape(who, arg, v, 1, cols);
  unfold::detail::require_finite(who, arg, v);
}

/// Throws unless `value` is finite.
template <Real Scalar>
void require_finite_scalar(std::string_view who, std::string_view arg, Scalar value)
{
  if (!std::isfinite(value)) {
    std::ostringstream out;
    out << arg << " = " << value << ", expected a finite value";
    unfold::detail::fail(who, out.str());
  }
}

/// Throws if row `i` of `m` holds a non-finite entry; `why` says why the row is checked.
template <class Derived>
void require_finite_row(std::string_view who, std::string_view arg,
                        const Eigen::DenseBase<Derived>& m, Eigen::Index i, std::string_view why)
{
  for (Eigen::Index j = 0; j < m.cols(); ++j)
    if (!std::isfinite(m(i, j))) {
      std::ostringstream out;
      out << arg << " (" << unfold::detail::shape_of(m) << ") has a non-finite entry " << m(i, j)
          << " at (" << i << ", " << j << ") in a row that is " << why;
      unfold::detail::fail(who, out.str());
    }
}

}  // namespace unfold::reference::detail
