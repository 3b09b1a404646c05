#pragma once

/// \file
/// Scalar traits and the matrix aliases used throughout: tokens are the rows of an n x d matrix.

#include <Eigen/Core>

#include <concepts>
#include <type_traits>

namespace unfold {

/// The scalar types the library is written for.
template <class T>
concept Real = std::same_as<T, float> || std::same_as<T, double>;

/// n x d token matrix (one token per row), or any dense matrix of the library.
template <Real Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

/// A row vector, e.g. a bias `b` of shape 1 x d.
template <Real Scalar>
using RowVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

/// A column vector, e.g. the n squared metric norms q.
template <Real Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// The reference aliases never take part in template argument deduction (type_identity_t), so
// that a function deducing Scalar from an energy accepts a plain Matrix, a block or a map.

/// A writable view of caller-owned storage.
template <Real Scalar>
using MatrixRef = Eigen::Ref<Matrix<std::type_identity_t<Scalar>>>;

/// A read-only view of a matrix, a block or a map, without a copy when it is column-major.
template <Real Scalar>
using ConstMatrixRef = Eigen::Ref<const Matrix<std::type_identity_t<Scalar>>>;

template <Real Scalar>
using ConstRowVectorRef = Eigen::Ref<const RowVector<std::type_identity_t<Scalar>>>;

}  // namespace unfold
