#pragma once

/// \file
/// The pair kernel behind the attention energy, its gradient and the MM step: one pass over
/// the pairs of tokens computes the weights beta_ij = rho'(s_ij), the pair energy
/// sum_{i<j} rho(s_ij) and the product of the weight matrix with a matrix of token features,
/// either on one n x n matrix (dense path) or over square blocks of tokens so that memory is
/// linear in n (streamed path). AttentionPolicy chooses between them.

#include "../core/types.hpp"
#include "../core/validate.hpp"
#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

namespace unfold {

/// Which implementation of the attention kernels runs.
enum class AttentionPath {
  automatic,  ///< dense up to AttentionPolicy::dense_max_n tokens, streamed above
  dense,      ///< one n x n weight matrix: memory quadratic in n
  streamed    ///< square blocks of AttentionPolicy::block tokens: memory linear in n
};

/// How the attention energy, its gradient and the attention steps traverse the token pairs.
///
/// Both paths compute the same weights from the same formula; they differ in the order of
/// the floating-point sums (the results agree to rounding, about 1e-15 relative in double)
/// and in memory. The dense path holds one n x n matrix (n^2 * sizeof(Scalar) bytes: 256 MiB
/// at n = 8192 in float); the streamed path holds one block x block tile (256 KiB in float)
/// and a few n x d matrices, and visits each pair once, as the dense path does. Because its
/// tiles stay in cache, the streamed path is also the faster one as soon as n exceeds one
/// block (the MM step at n = 512, d = 100 in float: 1.0 ms streamed, 1.6 ms dense; see
/// bench/README.md). Up to one block both paths are the same single tile, hence the default
/// threshold dense_max_n = block.
///
/// Set it on the energy (`AttentionEnergy(P, lambda, policy)`, `energy.with_policy(policy)`);
/// the MM steps on that energy and its bound follow it, and `softmax_attention_step` takes one
/// as its last argument:
///
///     AttentionEnergy<float> energy(P, 0.0f, AttentionPolicy::streamed());  // always blocked
///     auto dense = energy.with_policy(AttentionPolicy::dense());          // never blocked
struct AttentionPolicy {
  AttentionPath path = AttentionPath::automatic;

  /// Tokens per block of the streamed path (a tile holds block^2 weights), >= 1.
  Eigen::Index block = 256;

  /// The automatic choice is dense for n <= dense_max_n and streamed above.
  Eigen::Index dense_max_n = 256;

  /// Throws std::invalid_argument naming `who` unless block >= 1 and dense_max_n >= 0.
  void validate(std::string_view who) const
  {
    if (block < 1)
      detail::fail(who, "policy.block = " + std::to_string(block) + ", expected block >= 1");
    if (dense_max_n < 0)
      detail::fail(who, "policy.dense_max_n = " + std::to_string(dense_max_n) +
                            ", expected dense_max_n >= 0");
  }

  /// Whether n tokens take the streamed path.
  bool streams(Eigen::Index n) const
  {
    return path == AttentionPath::streamed ||
           (path == AttentionPath::automatic && n > dense_max_n);
  }

  /// The tile size for n tokens: n on the dense path, min(block, n) on the streamed path.
  Eigen::Index tile(Eigen::Index n) const { return streams(n) ? std::min(block, n) : n; }

  static AttentionPolicy dense() { return {AttentionPath::dense, 256, 256}; }
  static AttentionPolicy streamed(Eigen::Index block = 256)
  {
    return {AttentionPath::streamed, block, 256};
  }
};

namespace detail {

/// The metric coordinates of the tokens, Z = Y P (n x k), centred: the pair distances
/// 0.5 ||z_i - z_j||^2 do not change when every z_i moves by the same vector, and from the
/// centred coordinates the Gram formula s_ij = 0.5 (q_i + q_j) - z_i.z_j loses far less to
/// cancellation when the tokens sit far from the origin.
template <class Scalar>
struct MetricCoordinates {
  /// Zc = Z - 1 mean(Z), n x k.
  Matrix<Scalar> centred;
  /// mean(Z), 1 x k.
  RowVector<Scalar> mean;
  /// 0.5 ||zc_i||^2, n.
  Vector<Scalar> half_norms;
  /// ||Z||_F^2 (uncentred), for the lambda term of the energy.
  Scalar norm2 = 0;
};

template <class Scalar>
void metric_coordinates(const ConstMatrixRef<Scalar>& Y, const Matrix<Scalar>& P,
                        MetricCoordinates<Scalar>& mc)
{
  mc.centred.noalias() = Y * P;
  mc.norm2 = mc.centred.squaredNorm();
  mc.mean = mc.centred.colwise().mean();
  mc.centred.rowwise() -= mc.mean;
  mc.half_norms = Scalar(0.5) * mc.centred.rowwise().squaredNorm();
}

/// g[i] <- exp(arg(g[i], h[i])) for i < m, with Eigen's packet exp for every entry (the tail
/// too, through a padded packet), so that a weight is the same function of its argument
/// wherever it lies in a tile; returns the sum of the new g[i]. Results below the smallest
/// normal number are flushed to 0: they are below rounding against the weights they are
/// normalised with, and subnormal operands slow the products that follow.
///
/// `arg` maps two packets to the packet of exponents (a generic lambda).
template <class Scalar, class Argument>
Scalar exp_column(Scalar* g, const Scalar* h, Eigen::Index m, Argument&& arg)
{
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<Scalar>::type;
  constexpr Eigen::Index lanes = ei::packet_traits<Scalar>::size;
  const Packet zero = ei::pset1<Packet>(Scalar(0));
  const Packet smallest = ei::pset1<Packet>(std::numeric_limits<Scalar>::min());
  auto weigh = [&](const Packet& gp, const Packet& hp) {
    const Packet u = ei::pexp(arg(gp, hp));
    return ei::pselect(ei::pcmp_lt(u, smallest), zero, u);
  };

  Packet sum = zero;
  Eigen::Index i = 0;
  for (; i + lanes <= m; i += lanes) {
    const Packet u = weigh(ei::ploadu<Packet>(g + i), ei::ploadu<Packet>(h + i));
    ei::pstoreu(g + i, u);
    sum = ei::padd(sum, u);
  }
  if (i < m) {
    Scalar gb[lanes] = {}, hb[lanes] = {}, ub[lanes];
    std::copy(g + i, g + m, gb);
    std::copy(h + i, h + m, hb);
    ei::pstoreu(ub, weigh(ei::ploadu<Packet>(gb), ei::ploadu<Packet>(hb)));
    for (Eigen::Index t = 0; t < m - i; ++t)
      g[i + t] = ub[t];
    std::fill(ub + (m - i), ub + lanes, Scalar(0));
    sum = ei::padd(sum, ei::ploadu<Packet>(ub));
  }

  // The lanes summed in order through memory: Eigen's predux goes through AVX-512 extract
  // intrinsics that GCC 12 reports as reading uninitialised values (GCC bug 105593).
  Scalar lanes_of_sum[lanes];
  ei::pstoreu(lanes_of_sum, sum);
  Scalar total = 0;
  for (Eigen::Index t = 0; t < lanes; ++t)
    total += lanes_of_sum[t];
  return total;
}

/// One column of a tile: on entry g[i] = zc_r(i) . zc_c for the m rows r(i) of the tile, with
/// hq[i] = 0.5 q_r(i) and hqc = 0.5 q_c; on exit g[i] = rho'(s_i), s_i = max(0, hq[i] + hqc -
/// g[i]). Returns sum_i rho(s_i). ExpKernel goes through exp_column (vectorised, flushed);
/// other kernels through their scalar functions.
template <class Kernel, class Scalar>
Scalar weigh_column(Scalar* g, const Scalar* hq, Scalar hqc, Eigen::Index m)
{
  if constexpr (std::is_same_v<Kernel, ExpKernel>) {
    namespace ei = Eigen::internal;
    using Packet = typename ei::packet_traits<Scalar>::type;
    const Packet zero = ei::pset1<Packet>(Scalar(0));
    const Packet half_c = ei::pset1<Packet>(hqc);
    // -max(0, s) with the 0 first, so that a NaN distance (overflowed Gram entries) clamps to
    // 0 as std::max(0, s) does.
    return -exp_column(g, hq, m, [&](const Packet& gp, const Packet& hp) {
      return ei::pnegate(ei::pmax(zero, ei::psub(ei::padd(hp, half_c), gp)));
    });
  } else {
    Scalar total = 0;
    for (Eigen::Index i = 0; i < m; ++i) {
      const Scalar s = std::max(Scalar(0), hq[i] + hqc - g[i]);
      total += Kernel::rho(s);
      g[i] = Kernel::derivative(s);
    }
    return total;
  }
}

/// One pass over all pairs of tokens in tiles of `tile` x `tile` (tile = n: the dense path).
///
/// Returns sum_{i<j} rho(s_ij) (accumulated in double). When `mix` is given (n x m), also
/// writes out = W mix (n x m), where W is the symmetric matrix of the weights rho'(s_ij) with
/// the diagonal set to `self`. Each pair is visited once: a diagonal tile holds the lower
/// triangle of its Gram matrix (a triangular product, n^2 k / 2 multiply-adds over all
/// diagonal tiles), an off-diagonal tile (I > J) its full Gram matrix and contributes both
/// W_IJ mix_J to rows I and W_IJ^T mix_I to rows J. Memory: one tile plus `out`.
template <class Kernel, class Scalar>
double pair_pass(const MetricCoordinates<Scalar>& mc, Eigen::Index tile,
                 const std::type_identity_t<Matrix<Scalar>>* mix, Scalar self,
                 Matrix<Scalar>& out)
{
  const Matrix<Scalar>& Zc = mc.centred;
  const Scalar* hq = mc.half_norms.data();
  const Eigen::Index n = Zc.rows();
  tile = std::max<Eigen::Index>(1, std::min(tile, n));
  if (mix)
    out.setZero(n, mix->cols());

  Matrix<Scalar> T(tile, tile);
  double pairs = 0;
  for (Eigen::Index i0 = 0; i0 < n; i0 += tile) {
    const Eigen::Index bi = std::min(tile, n - i0);
    const auto Zi = Zc.middleRows(i0, bi);

    // Diagonal tile: the lower triangle of Zc_I Zc_I^T becomes the weights, the diagonal
    // `self`; the product reads the lower triangle as the symmetric matrix it stands for.
    auto Tii = T.topLeftCorner(bi, bi);
    Tii.template triangularView<Eigen::Lower>() = Zi * Zi.transpose();
    for (Eigen::Index c = 0; c < bi; ++c) {
      pairs += weigh_column<Kernel>(&Tii.coeffRef(c + 1 < bi ? c + 1 : c, c),
                                    hq + i0 + c + 1, hq[i0 + c], bi - c - 1);
      Tii(c, c) = self;
    }
    if (mix)
      out.middleRows(i0, bi).noalias() +=
          Tii.template selfadjointView<Eigen::Lower>() * mix->middleRows(i0, bi);

    // Off-diagonal tiles against the earlier (full) blocks.
    for (Eigen::Index j0 = 0; j0 < i0; j0 += tile) {
      const auto Zj = Zc.middleRows(j0, tile);
      auto Tij = T.topLeftCorner(bi, tile);
      Tij.noalias() = Zi * Zj.transpose();
      for (Eigen::Index c = 0; c < tile; ++c)
        pairs += weigh_column<Kernel>(&Tij.coeffRef(0, c), hq + i0, hq[j0 + c], bi);
      if (mix) {
        out.middleRows(i0, bi).noalias() += Tij * mix->middleRows(j0, tile);
        out.middleRows(j0, tile).noalias() += Tij.transpose() * mix->middleRows(i0, bi);
      }
    }
  }
  return pairs;
}

/// [X | 1]: the product with the weights then also gives their row sums (last column).
template <class Derived>
Matrix<typename Derived::Scalar> with_ones_column(const Eigen::MatrixBase<Derived>& X)
{
  using Scalar = typename Derived::Scalar;
  Matrix<Scalar> augmented(X.rows(), X.cols() + 1);
  augmented.leftCols(X.cols()) = X;
  augmented.col(X.cols()).setOnes();
  return augmented;
}

}  // namespace detail

}  // namespace unfold
