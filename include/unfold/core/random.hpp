#pragma once

/// \file
/// Seeded random matrices for examples and tests.
///
/// The generator is std::mt19937_64, whose sequence the C++ standard fixes; the normal
/// distribution on top of it is the standard library's, so the numbers are reproducible for a
/// given standard library (libstdc++ here), not across all of them.

#include "types.hpp"

#include <cmath>
#include <random>

namespace unfold {

/// Entries drawn independently from N(0, sigma^2).
template <Real Scalar>
Matrix<Scalar> normal_matrix(Eigen::Index rows, Eigen::Index cols, Scalar sigma,
                             std::mt19937_64& rng)
{
  std::normal_distribution<double> normal(0.0, double(sigma));
  Matrix<Scalar> m(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i)
      m(i, j) = Scalar(normal(rng));
  return m;
}

/// Xavier (Glorot) normal initialisation of a weight used as `Y W`, W of rows x cols:
/// N(0, 2 / (rows + cols)). For a 1 x d bias this matches PyTorch's xavier_normal_ on a
/// tensor of shape (1, d).
template <Real Scalar>
Matrix<Scalar> xavier_normal(Eigen::Index rows, Eigen::Index cols, std::mt19937_64& rng)
{
  const Scalar sigma = Scalar(std::sqrt(2.0 / double(rows + cols)));
  return normal_matrix<Scalar>(rows, cols, sigma, rng);
}

}  // namespace unfold
