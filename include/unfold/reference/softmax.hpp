#pragma once

/// \file
/// Row-wise softmax and log-sum-exp with the row maximum subtracted first.
///
/// PyTorch conventions matched: `torch.softmax(z, dim=-1)` and `torch.logsumexp(z, dim=-1)` on
/// a 2-D tensor whose rows are the last dimension. One deliberate difference: a row whose
/// entries are all -inf (every key masked) gives a row of zeros here, where PyTorch's softmax
/// gives NaN; its log-sum-exp is -inf in both. No finite or infinite input produces a NaN.

#include "unfold/core/types.hpp"
#include "unfold/core/validate.hpp"

#include <Eigen/Core>

#include <cmath>
#include <limits>
#include <sstream>
#include <string_view>

namespace unfold::reference {

namespace detail {

/// Throws if `z` holds a NaN, naming its position; infinities are allowed.
template <class Derived>
void require_no_nan(std::string_view who, const Eigen::MatrixBase<Derived>& z)
{
  // A vectorised sum first: it is NaN when an entry is, and also for +inf beside -inf, so the
  // loop, which only throws at a NaN, runs just then and names the position.
  if (!std::isnan(z.sum()))
    return;
  for (Eigen::Index j = 0; j < z.cols(); ++j)
    for (Eigen::Index i = 0; i < z.rows(); ++i)
      if (std::isnan(z(i, j))) {
        std::ostringstream out;
        out << "logits (" << unfold::detail::shape_of(z) << ") has a NaN at (" << i << ", " << j
            << ")";
        unfold::detail::fail(who, out.str());
      }
}

/// The softmax of each column of `z` in place (column i: the logits of query i), with the
/// conventions of softmax_rows. Columns are contiguous, so Eigen vectorises the exp.
template <class Scalar>
void softmax_columns_in_place(Eigen::Ref<Matrix<Scalar>> z)
{
  constexpr Scalar inf = std::numeric_limits<Scalar>::infinity();
  require_no_nan("unfold::reference::softmax_rows", z.transpose());

  for (Eigen::Index i = 0; i < z.cols(); ++i) {
    auto column = z.col(i).array();
    const Scalar top = column.maxCoeff();
    if (top == -inf) {
      column.setZero();
      continue;
    }

    // An infinite maximum: the weight is shared by the +inf entries only.
    if (top == inf) {
      column = (column == inf).template cast<Scalar>();
      column /= column.sum();
      continue;
    }

    // exp(z - max) lies in [0, 1] with at least one 1, so the sum is in [1, m]. Eigen's
    // vectorised exp returns a subnormal, not 0, far below the maximum and at -inf (a masked
    // key); those are flushed to 0, below rounding against the 1.
    column = (column - top).exp();
    column = (column < std::numeric_limits<Scalar>::min()).select(Scalar(0), column);
    column /= column.sum();
  }
}

}  // namespace detail

/// \brief Softmax of each row: `out(i, j) = exp(z(i, j) - max_k z(i, k)) / sum_l exp(...)`.
///
/// In: `logits` z, n x m, entries finite or +-inf. Out: n x m, each row sums to 1 or is zero.
/// A row that is all -inf (or has no entries) gives zeros. A row holding +inf puts equal weight
/// on its +inf entries, the limit of the finite case. Subtracting the maximum keeps the largest
/// exponent at exp(0) = 1, so logits of +-1e4 in float give exact 0/1 weights.
/// \tparam Derived any dense Eigen expression with a float or double scalar.
/// \throws std::invalid_argument if a logit is NaN.
template <class Derived>
  requires Real<typename Derived::Scalar>
Matrix<typename Derived::Scalar> softmax_rows(const Eigen::MatrixBase<Derived>& logits)
{
  using Scalar = typename Derived::Scalar;
  if (logits.cols() == 0)
    return Matrix<Scalar>::Zero(logits.rows(), 0);

  // Row i of the logits is column i here.
  Matrix<Scalar> columns = logits.transpose();
  detail::softmax_columns_in_place<Scalar>(columns);
  return columns.transpose();
}

/// \brief Log-sum-exp of each row: `lse(i) = max_k z(i, k) + log sum_j exp(z(i, j) - max)`.
///
/// In: `logits` z, n x m, entries finite or +-inf. Out: n values. A row that is all -inf (or
/// has no entries) gives -inf; a row holding +inf gives +inf.
/// \tparam Derived any dense Eigen expression with a float or double scalar.
/// \throws std::invalid_argument if a logit is NaN.
template <class Derived>
  requires Real<typename Derived::Scalar>
Vector<typename Derived::Scalar> log_sum_exp_rows(const Eigen::MatrixBase<Derived>& logits)
{
  using Scalar = typename Derived::Scalar;
  constexpr Scalar inf = std::numeric_limits<Scalar>::infinity();
  detail::require_no_nan("unfold::reference::log_sum_exp_rows", logits);

  Vector<Scalar> out = Vector<Scalar>::Constant(logits.rows(), -inf);
  if (logits.cols() == 0)
    return out;

  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    const Scalar top = logits.row(i).maxCoeff();
    if (top == -inf || top == inf) {
      out(i) = top;
      continue;
    }
    out(i) = top + std::log((logits.row(i).array() - top).exp().sum());
  }
  return out;
}

}  // namespace unfold::reference
