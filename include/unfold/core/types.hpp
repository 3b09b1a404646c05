#pragma once

/// \file
/// Scalar traits and the matrix aliases used throughout: tokens are the rows of an n x d matrix.

#include <Eigen/Core>

#include <concepts>

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

template <Real Scalar>
using MatrixRef = Eigen::Ref<Matrix<Scalar>>;

template <Real Scalar>
using ConstMatrixRef = Eigen::Ref<const Matrix<Scalar>>;

template <Real Scalar>
using ConstRowVectorRef = Eigen::Ref<const RowVector<Scalar>>;

}  // namespace unfold
