#pragma once

/// \file
/// Normalisation of log-weights, shared by the attention steps (not by the reference
/// Transformer, which keeps its own, so that agreement between the two means something).

#include "../core/types.hpp"

#include <cmath>
#include <type_traits>

namespace unfold::detail {

/// Turns a vector of log-weights into weights that sum to 1, subtracting the maximum first so
/// that neither exp overflows nor the whole vector underflows. All -infinity gives zeros.
/// `v` is a vector or a vector block (a column of a matrix).
template <class VectorLike>
void softmax_in_place(VectorLike&& v)
{
  using Scalar = typename std::remove_cvref_t<VectorLike>::Scalar;
  const Scalar top = v.maxCoeff();
  if (!std::isfinite(top)) {
    v.setZero();
    return;
  }
  v = (v.array() - top).exp().matrix();
  v /= v.sum();
}

/// Softmax of every column (contiguous in Eigen's column-major storage). The attention steps
/// work on symmetric log-weights, whose column i is their row i, and then multiply by the
/// transpose.
template <class Scalar>
void softmax_columns_in_place(Matrix<Scalar>& logits)
{
  for (Eigen::Index j = 0; j < logits.cols(); ++j)
    softmax_in_place(logits.col(j));
}

}  // namespace unfold::detail
