#pragma once

/// \file
/// The multi-head pairwise energy over orthonormal head blocks (MATH.md 1.4), and a helper
/// that builds such blocks from arbitrary per-head projections.

#include "attention.hpp"

#include <Eigen/QR>

#include <vector>

namespace unfold {

/// E(Y) = sum_h E_pair(Y U_h): one pairwise attention energy per head, each with metric factor
/// U_h (d x d_h), the blocks orthonormal and mutually orthogonal (U^T U = I for U = [U_1 ...
/// U_h]). lambda applies to every head.
///
/// \tparam Kernel the kernel policy shared by the heads.
template <Real Scalar_, class Kernel_ = ExpKernel>
class MultiHeadAttentionEnergy {
public:
  using Scalar = Scalar_;
  using Kernel = Kernel_;
  using Head = AttentionEnergy<Scalar, Kernel>;

  /// \param blocks U_1, ..., U_h, each d x d_h; together orthonormal to within `tolerance`
  ///        (max |U^T U - I|).
  explicit MultiHeadAttentionEnergy(const std::vector<Matrix<Scalar>>& blocks,
                                    Scalar lambda = Scalar(0),
                                    Scalar tolerance = Scalar(1e3) *
                                                       Eigen::NumTraits<Scalar>::epsilon())
  {
    constexpr std::string_view who = "MultiHeadAttentionEnergy";
    if (blocks.empty())
      detail::fail(who, "blocks is empty, expected at least one head");
    const Eigen::Index d = blocks.front().rows();
    Eigen::Index width = 0;
    for (std::size_t h = 0; h < blocks.size(); ++h) {
      detail::require_rows(who, "blocks[" + std::to_string(h) + "]", blocks[h], d, "d");
      detail::require_nonempty(who, "blocks[" + std::to_string(h) + "]", blocks[h]);
      width += blocks[h].cols();
    }

    // All heads side by side must have orthonormal columns.
    Matrix<Scalar> U(d, width);
    Eigen::Index col = 0;
    for (const auto& block : blocks) {
      U.middleCols(col, block.cols()) = block;
      col += block.cols();
    }
    const Scalar error =
        (U.transpose() * U - Matrix<Scalar>::Identity(width, width)).cwiseAbs().maxCoeff();
    if (!(error <= tolerance))
      detail::fail(who, "blocks are not orthonormal: max |U^T U - I| = " + std::to_string(error) +
                            " for U = [U_1 ... U_h] of " + std::to_string(d) + " x " +
                            std::to_string(width));

    for (const auto& block : blocks)
      heads_.emplace_back(block, lambda);
  }

  static constexpr std::string_view name() { return "multi_head_attention"; }

  Eigen::Index dim() const { return heads_.front().dim(); }
  std::size_t heads() const { return heads_.size(); }
  const Head& head(std::size_t h) const { return heads_.at(h); }

  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    Scalar total = 0;
    for (const Head& head : heads_)
      total += head.value(Y);
    return total;
  }

  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    detail::require_shape("MultiHeadAttentionEnergy::value_and_gradient", "G", G, Y.rows(),
                          Y.cols());
    Matrix<Scalar> part(Y.rows(), Y.cols());
    G.setZero();
    Scalar total = 0;
    for (const Head& head : heads_) {
      total += head.value_and_gradient(Y, part);
      G += part;
    }
    return total;
  }

private:
  std::vector<Head> heads_;
};

/// Orthonormal head blocks built from arbitrary per-head projections, and what was lost.
template <Real Scalar>
struct OrthonormalHeads {
  /// U_1, ..., U_h: U_h spans the part of W_h orthogonal to the heads before it.
  std::vector<Matrix<Scalar>> blocks;

  /// Per head, ||W_h - U_h U_h^T W_h||_F / ||W_h||_F: the share of W_h outside its block
  /// (nonzero when heads overlap, since each block keeps only what is new).
  std::vector<Scalar> outside;

  /// Per head, ||W_h W_h^T - U_h U_h^T||_F / ||W_h W_h^T||_F: how far the head's metric is
  /// from the projection that replaces it (nonzero unless W_h has orthonormal columns).
  std::vector<Scalar> metric_error;
};

/// Gram-Schmidt over heads: U_h is an orthonormal basis of the range of W_h (d x d_h) with
/// the earlier blocks projected out, of width d_h (or less when W_h is rank-deficient after
/// the projection, to relative tolerance 1e3 eps).
template <Real Scalar>
OrthonormalHeads<Scalar> orthonormal_heads(const std::vector<Matrix<Scalar>>& projections)
{
  constexpr std::string_view who = "orthonormal_heads";
  if (projections.empty())
    detail::fail(who, "projections is empty, expected at least one head");
  const Eigen::Index d = projections.front().rows();

  OrthonormalHeads<Scalar> result;
  Matrix<Scalar> basis(d, 0);
  for (std::size_t h = 0; h < projections.size(); ++h) {
    const Matrix<Scalar>& W = projections[h];
    detail::require_rows(who, "projections[" + std::to_string(h) + "]", W, d, "d");
    detail::require_finite(who, "projections[" + std::to_string(h) + "]", W);

    // Project out the earlier heads (twice, against rounding), then an orthonormal basis of
    // what is left by column-pivoted QR.
    Matrix<Scalar> rest = W - basis * (basis.transpose() * W);
    rest -= basis * (basis.transpose() * rest);
    const Eigen::ColPivHouseholderQR<Matrix<Scalar>> qr(rest);
    const Scalar scale = std::max(W.norm(), std::numeric_limits<Scalar>::min());
    const Eigen::Index rank = [&] {
      Eigen::Index r = 0;
      const auto& R = qr.matrixR();
      for (Eigen::Index i = 0; i < std::min(R.rows(), R.cols()); ++i)
        if (std::abs(R(i, i)) > Scalar(1e3) * Eigen::NumTraits<Scalar>::epsilon() * scale)
          ++r;
      return r;
    }();
    const Matrix<Scalar> Q = qr.householderQ() * Matrix<Scalar>::Identity(d, rank);
    result.blocks.push_back(Q);

    const Matrix<Scalar> inside = Q * (Q.transpose() * W);
    result.outside.push_back((W - inside).norm() / scale);
    const Matrix<Scalar> metric = W * W.transpose();
    const Matrix<Scalar> projection = Q * Q.transpose();
    const Scalar metric_scale = std::max(metric.norm(), std::numeric_limits<Scalar>::min());
    result.metric_error.push_back((metric - projection).norm() / metric_scale);

    Matrix<Scalar> grown(d, basis.cols() + rank);
    grown << basis, Q;
    basis = std::move(grown);
  }
  return result;
}

}  // namespace unfold
