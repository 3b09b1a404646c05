#pragma once

/// \file
/// Spectral clamp of a symmetric matrix.

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <Eigen/Eigenvalues>

#include <sstream>

namespace unfold {

/// U clamp(Lambda, lo, hi) U^T for symmetric S = U Lambda U^T: the nearest symmetric matrix
/// (in Frobenius norm) whose eigenvalues lie in [lo, hi]. The result is symmetrised exactly.
template <class Derived>
Matrix<typename Derived::Scalar> spectral_clamp(const Eigen::MatrixBase<Derived>& S,
                                                typename Derived::Scalar lo,
                                                typename Derived::Scalar hi)
{
  using Scalar = typename Derived::Scalar;
  constexpr std::string_view who = "spectral_clamp";
  detail::require_nonempty(who, "S", S);
  detail::require_finite(who, "S", S);
  detail::require_symmetric(who, "S", S);
  if (!(lo <= hi)) {
    std::ostringstream out;
    out << "lo = " << lo << " > hi = " << hi << ", expected lo <= hi";
    detail::fail(who, out.str());
  }

  const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eigen(S.eval());
  const Vector<Scalar> clamped = eigen.eigenvalues().cwiseMax(lo).cwiseMin(hi);
  const Matrix<Scalar>& U = eigen.eigenvectors();
  Matrix<Scalar> result = U * clamped.asDiagonal() * U.transpose();
  return Scalar(0.5) * (result + result.transpose());
}

}  // namespace unfold
