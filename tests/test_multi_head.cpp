// The multi-head pairwise energy over orthonormal blocks, its MM step, the block builder, and
// the step against multi-head reference attention.

#include "helpers.hpp"

#include <unfold/check/equivalence.hpp>

#include <limits>

using namespace unfold;
using unfold::test::did_not_rise;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;

namespace {

// h orthonormal blocks of width w from a random orthogonal d x d matrix (d = h w).
template <class Scalar>
std::vector<Matrix<Scalar>> random_blocks(Eigen::Index h, Eigen::Index w, std::uint64_t seed)
{
  const Matrix<Scalar> A = random_tokens<Scalar>(h * w, h * w, seed);
  const Eigen::HouseholderQR<Matrix<Scalar>> qr(A);
  const Matrix<Scalar> Q = qr.householderQ();
  std::vector<Matrix<Scalar>> blocks;
  for (Eigen::Index i = 0; i < h; ++i)
    blocks.push_back(Q.middleCols(i * w, w));
  return blocks;
}

// Tokens whose component in every block U_h has norm radius[h]: the per-head metric
// normalisation under which multi-head softmax attention is the multi-head MM step.
template <class Scalar>
Matrix<Scalar> per_head_normalised(const Matrix<Scalar>& Y,
                                   const std::vector<Matrix<Scalar>>& blocks)
{
  Matrix<Scalar> out = Matrix<Scalar>::Zero(Y.rows(), Y.cols());
  for (std::size_t h = 0; h < blocks.size(); ++h) {
    const Matrix<Scalar> Z = Y * blocks[h];
    const Scalar radius = Scalar(0.8) + Scalar(0.3) * Scalar(h);
    for (Eigen::Index j = 0; j < Y.rows(); ++j)
      out.row(j) += (radius / Z.row(j).norm()) * Z.row(j) * blocks[h].transpose();
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("multi-head energy is the sum of its heads and passes the gradient check",
                   "[multi_head][gradient]", float, double)
{
  using Scalar = TestType;
  for (Eigen::Index n : {1, 2, 7})
    for (const Scalar lambda : {Scalar(0), Scalar(0.3)}) {
      INFO("n " << n << " lambda " << lambda);
      const auto blocks = random_blocks<Scalar>(3, 2, 10 + std::uint64_t(n));
      const MultiHeadAttentionEnergy<Scalar> energy(blocks, lambda);
      Matrix<Scalar> Y = random_tokens<Scalar>(n, 6, 20 + std::uint64_t(n), 0.7);
      if (n > 2)
        Y.row(2) = Y.row(1);
      Scalar sum = 0;
      for (const auto& U : blocks)
        sum += AttentionEnergy<Scalar>(U, lambda).value(Y);
      CHECK(energy.value(Y) == Approx(sum).epsilon(64 * std::numeric_limits<Scalar>::epsilon()));
      const auto result = check::gradient_check(energy, Y);
      INFO("relative error " << result.relative_error);
      CHECK(result.relative_error <= Tolerance<Scalar>::gradient);
    }
}

TEMPLATE_TEST_CASE("multi-head MM step never raises the energy for alpha in (0, 1]",
                   "[multi_head][descent]", float, double)
{
  using Scalar = TestType;
  for (std::uint64_t seed = 1; seed <= 15; ++seed) {
    const Eigen::Index h = 1 + Eigen::Index(seed % 3), w = 1 + Eigen::Index(seed % 2);
    const Eigen::Index n = 1 + Eigen::Index(seed % 8);
    INFO("seed " << seed << " heads " << h << " width " << w << " n " << n);
    auto blocks = random_blocks<Scalar>(h, w, seed);
    if (h > 1)
      blocks.pop_back();  // blocks need not span R^d
    const MultiHeadAttentionEnergy<Scalar> energy(blocks);
    const Matrix<Scalar> Y = random_tokens<Scalar>(n, h * w, seed + 100, 1.0);
    Matrix<Scalar> out(n, h * w);
    for (Scalar alpha : {Scalar(0.3), Scalar(1)}) {
      multi_head_mm_step(energy, Y, {alpha}, out);
      CHECK(did_not_rise(energy.value(Y), energy.value(out)));
    }
    CHECK(multi_head_mm_bound(energy, Y, {Scalar(1)}).holds());

    // Components outside every block do not move.
    if (h > 1) {
      Matrix<Scalar> U(h * w, 0);
      for (const auto& b : blocks) {
        Matrix<Scalar> grown(h * w, U.cols() + b.cols());
        grown << U, b;
        U = grown;
      }
      const Matrix<Scalar> outside = (out - Y) - (out - Y) * U * U.transpose();
      CHECK(outside.cwiseAbs().maxCoeff() <= Tolerance<Scalar>::exact);
    }
  }
}

TEMPLATE_TEST_CASE("multi-head MM step equals multi-head attention after per-head "
                   "normalisation", "[multi_head][equivalence]", float, double)
{
  using Scalar = TestType;
  for (std::uint64_t seed : {3, 4, 5}) {
    for (Eigen::Index heads : {1, 2, 4}) {
      INFO("seed " << seed << " heads " << heads);
      const auto blocks = random_blocks<Scalar>(heads, 2, seed);
      const MultiHeadMMStep<Scalar> step(MultiHeadAttentionEnergy<Scalar>(blocks), {Scalar(0.8)});
      const Matrix<Scalar> Y =
          per_head_normalised<Scalar>(random_tokens<Scalar>(6, heads * 2, seed + 9), blocks);
      Matrix<Scalar> unfolded(6, heads * 2);
      step.apply(Y, unfolded);
      const Matrix<Scalar> ref =
          reference::self_attention<Scalar>(Y, check::reference_attention(step));
      CHECK((unfolded - ref).cwiseAbs().maxCoeff() <= Tolerance<Scalar>::exact);
    }
  }
}

TEMPLATE_TEST_CASE("orthonormal_heads builds orthonormal blocks and reports what was lost",
                   "[multi_head][blocks]", float, double)
{
  using Scalar = TestType;
  const Eigen::Index d = 6;
  const Matrix<Scalar> W1 = random_tokens<Scalar>(d, 2, 1);
  const Matrix<Scalar> W2 = random_tokens<Scalar>(d, 2, 2);
  Matrix<Scalar> W3(d, 2);
  W3 << W1.col(0), random_tokens<Scalar>(d, 1, 3);  // shares a direction with head 1

  // The third head keeps only its one new direction.
  const auto heads = orthonormal_heads<Scalar>({W1, W2, W3});
  REQUIRE(heads.blocks[2].cols() == 1);
  Matrix<Scalar> U(d, 5);
  U << heads.blocks[0], heads.blocks[1], heads.blocks[2];
  const Scalar tol = Tolerance<Scalar>::exact;
  CHECK((U.transpose() * U - Matrix<Scalar>::Identity(5, 5)).cwiseAbs().maxCoeff() <= tol);
  CHECK(heads.outside[0] <= 64 * std::numeric_limits<Scalar>::epsilon());
  CHECK(heads.outside[2] > Scalar(0.1));
  CHECK(heads.metric_error[0] > Scalar(0.01));  // W1 is not orthonormal itself

  // Orthonormal, non-overlapping projections lose nothing.
  const auto exact = orthonormal_heads<Scalar>(random_blocks<Scalar>(3, 2, 4));
  for (std::size_t h = 0; h < 3; ++h) {
    CHECK(exact.outside[h] <= tol);
    CHECK(exact.metric_error[h] <= tol);
  }
  const MultiHeadAttentionEnergy<Scalar> energy(heads.blocks);
  CHECK(energy.heads() == 3);

  // Non-orthonormal blocks are rejected.
  CHECK_THAT(invalid_argument_message([&] { MultiHeadAttentionEnergy<Scalar>({W1, W2}); }),
             Catch::Contains("MultiHeadAttentionEnergy: blocks are not orthonormal"));
  CHECK(invalid_argument_message([&] {
          MultiHeadAttentionEnergy<Scalar>({heads.blocks[0], Matrix<Scalar>::Identity(5, 1)});
        }) == "MultiHeadAttentionEnergy: blocks[1] has 5 rows, expected d = 6");
}
