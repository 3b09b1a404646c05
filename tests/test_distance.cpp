// Distances of reference layers from the energy-compatible set: zero on layers built from
// unfolded steps, the predicted values for known perturbations, finite and nonzero on a
// PyTorch layer, and named errors on bad shapes.

#include "fixtures.hpp"
#include "helpers.hpp"

#include <unfold/check/distance.hpp>
#include <unfold/check/equivalence.hpp>
#include <unfold/io/npy.hpp>

#include <string>

using namespace unfold;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;
using unfold::test::Tolerance;
using unfold::test::fixture_path;
using unfold::test::load;

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

// Tokens whose component in block h has the same norm for every token (a different norm per
// head): there multi-head softmax attention equals the multi-head MM step.
template <class Scalar>
Matrix<Scalar> per_head_normalised(const Matrix<Scalar>& Y,
                                   const std::vector<Matrix<Scalar>>& blocks)
{
  Matrix<Scalar> out = Matrix<Scalar>::Zero(Y.rows(), Y.cols());
  for (std::size_t h = 0; h < blocks.size(); ++h) {
    const Matrix<Scalar> Z = Y * blocks[h];
    const Scalar radius = Scalar(0.9) + Scalar(0.2) * Scalar(h);
    for (Eigen::Index j = 0; j < Y.rows(); ++j)
      out.row(j) += (radius / Z.row(j).norm()) * Z.row(j) * blocks[h].transpose();
  }
  return out;
}

// A random antisymmetric w x w matrix.
template <class Scalar = double>
Matrix<Scalar> random_antisymmetric(Eigen::Index w, std::uint64_t seed, double sigma)
{
  const Matrix<Scalar> A = random_tokens<Scalar>(w, w, seed, sigma);
  return A - A.transpose();
}

template <class Scalar>
void require_feedforward_exact(const check::FeedForwardDistance<Scalar>& ffn,
                               const FeedForwardEnergy<Scalar>& energy, Scalar tol)
{
  INFO("symmetric " << ffn.symmetric_distance << " W2 " << ffn.output_map_distance << " b2 "
                    << ffn.output_bias << " r " << ffn.residual_weight);
  CHECK(ffn.symmetric_distance <= tol);
  CHECK(ffn.asymmetry <= tol);
  CHECK(ffn.output_map_distance <= tol);
  CHECK(ffn.output_bias <= tol);
  CHECK(std::abs(ffn.residual_weight) <= tol);
  CHECK(ffn.activation_is_prox);
  CHECK(ffn.compatible(tol));
  CHECK((ffn.S - energy.weight()).cwiseAbs().maxCoeff() <= tol);
  CHECK((ffn.b - energy.bias()).cwiseAbs().maxCoeff() <= tol);
}

// A layer of a PyTorch fixture, as tests/fixtures/make_fixtures.py stores it.
template <class Scalar = double>
reference::EncoderLayer<Scalar> load_layer(const std::string& name)
{
  const auto activation = io::read_npy_matrix<std::int64_t>(fixture_path(name, "activation"));
  const auto heads = io::read_npy_matrix<std::int64_t>(fixture_path(name, "heads"));
  const auto load = [&](const std::string& file) { return ::load<Scalar>(name, file); };
  reference::EncoderLayer<Scalar> layer;
  layer.attention = reference::attention_from_torch<Scalar>(
      load("layer0_in_proj_weight"), load("layer0_in_proj_bias"),
      load("layer0_out_proj_weight"), load("layer0_out_proj_bias"),
      Eigen::Index(heads(0, 0)));
  layer.feed_forward = reference::feed_forward_from_torch<Scalar>(
      load("layer0_linear1_weight"), load("layer0_linear1_bias"),
      load("layer0_linear2_weight"), load("layer0_linear2_bias"),
      activation(0, 0) == 0 ? reference::Activation::relu : reference::Activation::gelu_erf);
  layer.norm1.gain = load("layer0_norm1_weight");
  layer.norm1.bias = load("layer0_norm1_bias");
  layer.norm2.gain = load("layer0_norm2_weight");
  layer.norm2.bias = load("layer0_norm2_bias");
  layer.norm_first = io::read_npy_matrix<bool>(fixture_path(name, "norm_first"))(0, 0);
  return layer;
}

bool finite_and_positive(double x) { return std::isfinite(x) && x > 0.0; }

}  // namespace

TEMPLATE_TEST_CASE("a layer built from a multi-head MM step and a feed-forward step is at "
                   "distance 0", "[distance][exact]", float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;
  for (const Eigen::Index heads : {1, 2, 4}) {
    for (const bool relu : {false, true}) {
      const std::uint64_t seed = std::uint64_t(10 * heads + (relu ? 1 : 0));
      const Scalar alpha = Scalar(0.8), ffn_alpha = Scalar(0.7);
      INFO("heads " << heads << " relu " << relu << " seed " << seed);
      const Eigen::Index w = 2, d = heads * w;
      const auto blocks = random_blocks<Scalar>(heads, w, seed);
      const MultiHeadMMStep<Scalar> attention(MultiHeadAttentionEnergy<Scalar>(blocks), {alpha});
      const FeedForwardEnergy<Scalar> energy(test::random_symmetric<Scalar>(d, seed, -0.95, 0.95),
                                             random_tokens<Scalar>(1, d, seed + 1));
      const FeedForwardStep<Scalar> feedforward(energy, {ffn_alpha, relu});
      const Matrix<Scalar> Y =
          per_head_normalised<Scalar>(random_tokens<Scalar>(7, d, seed + 2), blocks);

      check::NearestOptions<Scalar> options;
      options.form = check::AttentionForm::multi_head;
      options.feed_forward.step_size = ffn_alpha;
      const auto report =
          check::layer_distance<Scalar>(check::reference_attention(attention),
                                        check::reference_feedforward(feedforward), Y, options);

      // Attention: symmetric PSD unit projections, value maps alpha U_h U_h^T, no overlap.
      const auto& att = report.attention;
      REQUIRE(att.heads.size() == std::size_t(heads));
      for (const auto& head : att.heads) {
        INFO("asymmetry " << head.asymmetry << " psd " << head.psd_violation << " projection "
                          << head.projection_distance << " value " << head.value_distance);
        CHECK(head.basis.cols() == w);
        CHECK(head.asymmetry <= tol);
        CHECK(head.psd_violation <= tol);
        CHECK(head.projection_distance <= tol);
        CHECK(head.value_distance <= tol);
        CHECK(head.value_scale == Approx(alpha).epsilon(tol));
        CHECK(head.query_bias == 0);
      }
      CHECK(att.overlap <= tol);
      CHECK(att.blocks.distance <= tol);
      CHECK(att.blocks.gain_error <= tol);
      CHECK(att.blocks.step_size == Approx(alpha).epsilon(tol));
      CHECK(att.full.distance <= tol);
      CHECK(att.residual_weight == Approx(1 - alpha));
      CHECK(att.output_offset == 0);
      require_feedforward_exact(report.feed_forward, energy, tol);

      // The nearest layer is the layer itself: its output equals the steps' on any tokens,
      // and the reference layer's on tokens with equal per-head norms.
      INFO("output gap " << report.output_gap << " norm spread " << report.norm_spread);
      CHECK(report.nearest.multi_head());
      CHECK(report.output_gap <= tol);
      CHECK(report.norm_spread <= tol);
      CHECK_FALSE(report.layer_norms_dropped);
      const Matrix<Scalar> X = random_tokens<Scalar>(5, d, seed + 3);
      Matrix<Scalar> mid(5, d), out(5, d);
      attention.apply(X, mid);
      feedforward.apply(mid, out);
      CHECK((report.nearest.apply(X) - out).cwiseAbs().maxCoeff() <= tol);
    }
  }
}

TEMPLATE_TEST_CASE("a layer built from a single-head MM step is at distance 0 in the single-head "
                   "form",
                   "[distance][exact]", float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;
  for (const Eigen::Index k : {4, 2}) {
    INFO("k " << k);
    const Eigen::Index d = 4;
    const Matrix<Scalar> P = random_tokens<Scalar>(d, k, 40 + std::uint64_t(k), 0.7);
    const MMAttentionStep<Scalar> attention(AttentionEnergy<Scalar>(P), {Scalar(0.6)});
    const FeedForwardEnergy<Scalar> energy(
        test::random_symmetric<Scalar>(d, 5, Scalar(-0.95), Scalar(0.95)),
        random_tokens<Scalar>(1, d, 6));
    const FeedForwardStep<Scalar> feedforward(energy, {Scalar(1), true});
    const Matrix<Scalar> Y =
        test::with_equal_metric_norms<Scalar>(random_tokens<Scalar>(6, d, 7), P, Scalar(1.1));

    const auto report = check::layer_distance<Scalar>(
        check::reference_attention(attention), check::reference_feedforward(feedforward), Y);
    const auto& head = report.attention.heads.at(0);
    CHECK(head.asymmetry <= tol);
    CHECK(head.psd_violation <= tol);
    CHECK(head.basis.cols() == k);
    CHECK(report.attention.full.distance <= tol);
    CHECK(report.attention.full.gain_error <= tol);
    CHECK(report.attention.full.step_size == Approx(0.6));
    CHECK(report.attention.single_head_factor.cols() == k);
    require_feedforward_exact(report.feed_forward, energy, tol);
    CHECK_FALSE(report.nearest.multi_head());
    CHECK(report.output_gap <= tol);

    // P P^T is not a unit projection; with k < d the value map I is not one on range(P) either.
    // Both are distances from the multi-head form only.
    CHECK(head.projection_distance > Scalar(0.01));
    if (k < d)
      CHECK(head.value_distance > Scalar(0.1));
    else
      CHECK(head.value_distance <= tol);
  }
}

TEMPLATE_TEST_CASE("an antisymmetric perturbation of W_K gives the predicted asymmetry",
                   "[distance][asymmetry]", float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;
  // With W_Q^h = U_h and W_K^h = U_h (I - A_h), A_h antisymmetric: M_h = U_h (I + A_h) U_h^T,
  // whose symmetric part is still U_h U_h^T, and ||M - M^T|| / (2 ||M||) = ||A|| / sqrt(w +
  // ||A||^2) since I and A are orthogonal.
  for (const Eigen::Index heads : {1, 3}) {
    const Eigen::Index w = 3;
    const auto blocks = random_blocks<Scalar>(heads, w, 50 + std::uint64_t(heads));
    const MultiHeadMMStep<Scalar> step(MultiHeadAttentionEnergy<Scalar>(blocks), {Scalar(0.5)});
    reference::MultiHeadAttention<Scalar> layer = check::reference_attention(step);
    std::vector<Scalar> predicted;
    for (Eigen::Index h = 0; h < heads; ++h) {
      const Matrix<Scalar> A = random_antisymmetric<Scalar>(w, 60 + std::uint64_t(h), 0.4);
      layer.W_K.middleCols(h * w, w) -= blocks[std::size_t(h)] * A;
      predicted.push_back(A.norm() / std::sqrt(Scalar(w) + A.squaredNorm()));
    }

    const auto report = check::attention_distance<Scalar>(layer);
    for (Eigen::Index h = 0; h < heads; ++h) {
      const auto& head = report.heads[std::size_t(h)];
      INFO("heads " << heads << " head " << h << " asymmetry " << head.asymmetry);
      CHECK(predicted[std::size_t(h)] > Scalar(0.1));
      CHECK(head.asymmetry == Approx(predicted[std::size_t(h)]).epsilon(tol));
      CHECK(head.psd_violation <= tol);
      CHECK(head.projection_distance <= tol);
      CHECK(head.value_distance <= tol);
    }
    CHECK(report.overlap <= tol);
  }
}

TEMPLATE_TEST_CASE("feed-forward perturbations give the predicted distances", "[distance][ffn]",
                   float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;
  const Eigen::Index d = 5;
  const FeedForwardEnergy<Scalar> energy(
      test::random_symmetric<Scalar>(d, 70, Scalar(-0.9), Scalar(0.9)),
      random_tokens<Scalar>(1, d, 71));
  const FeedForwardStep<Scalar> step(energy, {Scalar(1), true});

  SECTION("an antisymmetric part K of W1 is all of the distance: ||K|| / ||W1 + K||")
  {
    reference::FeedForward<Scalar> block = check::reference_feedforward(step);
    const Matrix<Scalar> K = random_antisymmetric<Scalar>(d, 72, 0.3);
    const Matrix<Scalar> W1 = block.W1;
    block.W1 += K;
    const auto report = check::feedforward_distance<Scalar>(block);
    const Scalar predicted = K.norm() / std::sqrt(W1.squaredNorm() + K.squaredNorm());
    CHECK(report.symmetric_distance == Approx(predicted).epsilon(tol));
    CHECK(report.asymmetry == Approx(predicted).epsilon(tol));
    CHECK((report.nearest_map - W1).cwiseAbs().maxCoeff() <= tol);
    CHECK((report.S - energy.weight()).cwiseAbs().maxCoeff() <= tol);
  }

  SECTION("an eigenvalue outside the range is clamped to its end")
  {
    reference::FeedForward<Scalar> block;
    block.W1 = Matrix<Scalar>::Identity(d, d);
    block.W1(0, 0) = -2;  // alpha = 1: the map's spectrum must lie in [-0.95, 0.95]
    block.W2 = Matrix<Scalar>::Identity(d, d);
    block.b1 = RowVector<Scalar>::Constant(d, Scalar(0.5));
    block.activation = reference::Activation::relu;
    const auto report = check::feedforward_distance<Scalar>(block);
    const double predicted = std::sqrt(1.05 * 1.05 + 4 * 0.05 * 0.05) / double(block.W1.norm());
    CHECK(report.symmetric_distance == Approx(predicted).epsilon(tol));
    CHECK(report.nearest_map(0, 0) == Approx(-0.95));
    CHECK(report.S(0, 0) == Approx(0.95));
    CHECK(report.b(0) == Approx(0.5));
  }

  SECTION("the ReLU structure: W2, b2 and a residual are reported; for the identity they fold")
  {
    reference::FeedForward<Scalar> block = check::reference_feedforward(step);
    block.W2 *= Scalar(2);
    block.b2 = RowVector<Scalar>::Constant(d, Scalar(0.1));
    const auto relu = check::feedforward_distance<Scalar>(block);
    CHECK(relu.output_map_distance == Approx(1.0));
    CHECK(relu.output_bias == Approx(0.1 * std::sqrt(double(d))));
    CHECK_FALSE(relu.compatible(tol));

    // act = identity: Y W1 2 + c is affine, only T = 2 W1 decides.
    block.activation = reference::Activation::identity;
    block.W1 *= Scalar(0.5);
    const auto affine = check::feedforward_distance<Scalar>(block);
    CHECK(affine.symmetric_distance <= tol);
    CHECK(affine.compatible(tol));
    CHECK_FALSE(affine.relu);

    // GELU is never a prox map; its nearest step uses ReLU.
    block.activation = reference::Activation::gelu_erf;
    const auto gelu = check::feedforward_distance<Scalar>(block);
    CHECK_FALSE(gelu.activation_is_prox);
    CHECK(gelu.relu);
    CHECK_FALSE(gelu.compatible(tol));
  }
}

TEMPLATE_TEST_CASE("a PyTorch TransformerEncoderLayer is at a nonzero, finite distance",
                   "[distance][pytorch]", float, double)
{
  using Scalar = TestType;
  const Scalar tol = Tolerance<Scalar>::exact;
  for (const std::string name : {"enc_post_relu", "enc_pre_relu_causal", "enc_post_gelu_kpm"}) {
    INFO("fixture " << name);
    const auto layer = load_layer<Scalar>(name);
    const Matrix<Scalar> Y =
        io::read_npy_stack<double>(fixture_path(name, "input")).at(0).template cast<Scalar>();
    const auto report = check::layer_distance<Scalar>(layer, Y);

    // Head 0 by hand from the stored weights: rows 0..w-1 of in_proj_weight are W_Q^0^T,
    // rows E..E+w-1 are W_K^0^T.
    const Matrix<Scalar> in_proj = load<Scalar>(name, "layer0_in_proj_weight");
    const Eigen::Index E = in_proj.cols(), w = E / layer.attention.heads;
    const Matrix<Scalar> M = in_proj.topRows(w).transpose() * in_proj.middleRows(E, w);
    const Scalar asymmetry = (M - M.transpose()).norm() / (2 * M.norm());
    CHECK(report.attention.heads.at(0).asymmetry == Approx(asymmetry).epsilon(tol));

    for (const auto& head : report.attention.heads) {
      INFO("asymmetry " << head.asymmetry << " psd " << head.psd_violation << " value "
                        << head.value_distance);
      CHECK(finite_and_positive(head.asymmetry));
      CHECK(finite_and_positive(head.psd_violation));
      CHECK(finite_and_positive(head.projection_distance));
      CHECK(finite_and_positive(head.value_distance));
      CHECK(finite_and_positive(head.query_bias));
      CHECK(head.basis.cols() >= 1);
      CHECK(head.basis.cols() <= w);
    }
    const auto& att = report.attention;
    CHECK(finite_and_positive(att.overlap));
    CHECK(att.overlap <= 1 + tol);
    CHECK(finite_and_positive(att.blocks.distance));
    CHECK(finite_and_positive(att.full.distance));
    CHECK(att.residual_weight == 1);
    CHECK(finite_and_positive(att.output_offset));

    const auto& ffn = report.feed_forward;
    CHECK(finite_and_positive(ffn.symmetric_distance));
    CHECK(finite_and_positive(ffn.output_map_distance));
    CHECK(finite_and_positive(ffn.output_bias));
    CHECK(ffn.residual_weight == 1);
    CHECK(ffn.activation_is_prox == (name != "enc_post_gelu_kpm"));
    CHECK_FALSE(ffn.compatible(1e-3));

    INFO("output gap " << report.output_gap);
    CHECK(finite_and_positive(report.output_gap));
    CHECK(report.layer_norms_dropped);
    CHECK(report.nearest.multi_head());

    // The nearest stack runs and records a finite trace.
    const auto run = report.nearest.run(Y, 12);
    CHECK(run.completed);
    CHECK(run.trace.entries.size() == 25);
    for (const auto& entry : run.trace.entries)
      CHECK(std::isfinite(entry.total));

    // A given attention step size replaces the fitted one; it must be positive.
    check::NearestOptions<Scalar> given;
    given.attention_step_size = Scalar(0.5);
    CHECK(check::layer_distance<Scalar>(layer, Y, given).nearest.attention_step_size() ==
          Scalar(0.5));
    given.attention_step_size = Scalar(0);
    CHECK(invalid_argument_message([&] { check::layer_distance<Scalar>(layer, Y, given); }) ==
          "check::nearest_layer: attention_step_size = 0, expected a finite value > 0");

    // The single-head form works on the same layer.
    check::NearestOptions<Scalar> single;
    single.form = check::AttentionForm::single_head;
    const auto other = check::layer_distance<Scalar>(layer, Y, single);
    CHECK_FALSE(other.nearest.multi_head());
    CHECK(finite_and_positive(other.output_gap));
  }
}

TEST_CASE("bad shapes and values throw std::invalid_argument naming the argument",
          "[distance][errors]")
{
  const Eigen::Index d = 4;
  const MMAttentionStep<double> step(AttentionEnergy<double>(random_tokens<double>(d, d, 80)));
  const FeedForwardStep<double> ffn_step(
      FeedForwardEnergy<double>(test::random_symmetric<double>(d, 81, -0.9, 0.9),
                                random_tokens<double>(1, d, 82)));
  const reference::MultiHeadAttention<double> attention = check::reference_attention(step);
  const reference::FeedForward<double> block = check::reference_feedforward(ffn_step);
  const Matrix<double> Y = random_tokens<double>(3, d, 83);

  auto bad = attention;
  bad.W_K = random_tokens<double>(d + 1, d, 84);
  CHECK(invalid_argument_message([&] { check::attention_distance<double>(bad); }) ==
        "check::attention_distance: W_K has 5 rows, expected rows of W_Q (d) = 4");
  bad = attention;
  bad.W_O = random_tokens<double>(d, d + 2, 85);
  bad.residual_weight = 0;
  CHECK(invalid_argument_message([&] { check::attention_distance<double>(bad); }) ==
        "check::attention_distance: W_O has 6 columns, expected rows of W_Q (d) = 4");
  bad = attention;
  bad.heads = 3;
  CHECK_THAT(invalid_argument_message([&] { check::attention_distance<double>(bad); }),
             Catch::Contains("k (columns of W_Q) = 4 is not divisible by heads = 3"));

  auto bad_block = block;
  bad_block.W2 = random_tokens<double>(d, d - 1, 86);
  CHECK(invalid_argument_message([&] { check::feedforward_distance<double>(bad_block); }) ==
        "check::feedforward_distance: W2 has 3 columns, expected rows of W1 (d) = 4");
  bad_block = block;
  bad_block.b1 = random_tokens<double>(1, d + 1, 87);
  CHECK(invalid_argument_message([&] { check::feedforward_distance<double>(bad_block); }) ==
        "check::feedforward_distance: b1 is 1 x 5, expected 1 x 4");

  check::FeedForwardTarget<double> target;
  target.lo = 1.0;
  target.hi = 0.0;
  CHECK(invalid_argument_message([&] { check::feedforward_distance<double>(block, target); }) ==
        "check::feedforward_distance: lo = 1, hi = 0, expected finite lo <= hi");
  target = {};
  target.step_size = 0;
  CHECK(invalid_argument_message([&] { check::feedforward_distance<double>(block, target); }) ==
        "check::feedforward_distance: step_size = 0, expected a finite value > 0");

  CHECK(invalid_argument_message([&] {
          check::layer_distance<double>(attention, block, random_tokens<double>(3, d - 1, 88));
        }) == "check::layer_distance: Y has 3 columns, expected d = 4");
  auto wide = block;
  wide.W1 = random_tokens<double>(d + 1, d, 89);
  wide.W2 = random_tokens<double>(d, d + 1, 90);
  CHECK(invalid_argument_message([&] { check::layer_distance<double>(attention, wide, Y); }) ==
        "check::layer_distance: feed_forward.W1 has 5 rows, expected rows of attention.W_Q (d) "
        "= 4");

  // Scores that repel in every direction have no metric to descend.
  auto repel = attention;
  repel.W_Q = Matrix<double>::Identity(d, d);
  repel.W_K = -Matrix<double>::Identity(d, d);
  const auto repel_report = check::attention_distance<double>(repel);
  CHECK(repel_report.heads[0].psd_violation == Approx(1.0));
  CHECK(repel_report.heads[0].basis.cols() == 0);
  const auto ffn_report = check::feedforward_distance<double>(block);
  CHECK_THAT(invalid_argument_message([&] { check::nearest_layer(repel_report, ffn_report); }),
             Catch::Contains("check::nearest_layer: the symmetric part of the summed score "
                             "matrix has no positive eigenvalue"));
  CHECK_THAT(invalid_argument_message([&] {
               check::nearest_layer(repel_report, ffn_report, check::AttentionForm::multi_head);
             }),
             Catch::Contains("check::nearest_layer: no head's symmetric score part"));
}
