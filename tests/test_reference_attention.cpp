#include "fixtures.hpp"
#include "helpers.hpp"
#include "unfold/io/npy.hpp"
#include "unfold/reference/attention.hpp"
#include "unfold/reference/softmax.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using unfold::Matrix;
using unfold::RowVector;
using namespace unfold::reference;
using Catch::Matchers::Contains;
using unfold::test::fixture_path;
using unfold::test::has_file;
using unfold::test::load;
using unfold::test::load_result;
using unfold::test::load_result_stack;
using unfold::test::load_stack;
using unfold::test::ndims;
template <class Scalar>
using Tolerance = unfold::test::TorchTolerance<Scalar>;

// Compares with PyTorch row by row. A row PyTorch returns as NaN (every key masked) must be
// entirely NaN there and equal `masked_row` exactly here.
template <class Scalar>
void require_matches_torch(const Matrix<Scalar>& got, const Matrix<Scalar>& want,
                           const RowVector<Scalar>& masked_row)
{
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  REQUIRE(got.allFinite());
  double max_abs_error = 0.0;
  double worst_ratio = 0.0;  // |got - want| / (atol + rtol |want|), must stay <= 1
  for (Eigen::Index i = 0; i < want.rows(); ++i) {
    if (want.row(i).hasNaN()) {
      INFO("row " << i << " is NaN in PyTorch; the reference gives the output bias");
      REQUIRE(want.row(i).array().isNaN().all());
      REQUIRE(got.row(i) == masked_row);
      continue;
    }
    for (Eigen::Index j = 0; j < want.cols(); ++j) {
      const double error = std::abs(double(got(i, j)) - double(want(i, j)));
      const double allowed = Tolerance<Scalar>::atol +
                             Tolerance<Scalar>::rtol * std::abs(double(want(i, j)));
      max_abs_error = std::max(max_abs_error, error);
      worst_ratio = std::max(worst_ratio, error / allowed);
    }
  }
  INFO("max_abs_error = " << std::scientific << max_abs_error);
  REQUIRE(worst_ratio <= 1.0);
}

template <class Scalar>
Matrix<Scalar> empty_or(const std::string& name, const std::string& file)
{
  return has_file(name, file) ? load<Scalar>(name, file) : Matrix<Scalar>();
}

template <class Scalar>
MultiHeadAttention<Scalar> load_attention(const std::string& name)
{
  const auto heads = Eigen::Index(
      unfold::io::read_npy_matrix<std::int64_t>(fixture_path(name, "heads"))(0, 0));
  const Matrix<Scalar> in_bias = empty_or<Scalar>(name, "in_proj_bias");
  const Matrix<Scalar> out_bias = empty_or<Scalar>(name, "out_proj_bias");
  if (has_file(name, "in_proj_weight"))
    return attention_from_torch<Scalar>(load<Scalar>(name, "in_proj_weight"), in_bias,
                                        load<Scalar>(name, "out_proj_weight"), out_bias, heads);
  return attention_from_torch<Scalar>(load<Scalar>(name, "q_proj_weight"),
                                      load<Scalar>(name, "k_proj_weight"),
                                      load<Scalar>(name, "v_proj_weight"), in_bias,
                                      load<Scalar>(name, "out_proj_weight"), out_bias, heads);
}

// The masks of sequence b; the key-padding file is m entries, or N x m for a batch.
template <class Scalar>
Masks<Scalar> load_masks(const std::string& name, Eigen::Index b)
{
  Masks<Scalar> masks;
  if (has_file(name, "key_padding_mask")) {
    const auto kpm = unfold::io::read_npy_matrix<bool>(fixture_path(name, "key_padding_mask"));
    masks.key_padding = KeyPaddingMask(kpm.row(b));
  }
  if (has_file(name, "attn_mask"))
    masks.attention =
        AttentionMask(unfold::io::read_npy_matrix<bool>(fixture_path(name, "attn_mask")));
  if (has_file(name, "float_mask"))
    masks.additive = AdditiveMask(load<Scalar>(name, "float_mask"));
  return masks;
}

// One attention fixture: parameters, masks of sequence 0, and its inputs (self-attention when
// the folder holds no separate keys and values).
template <class Scalar>
struct AttentionCase {
  MultiHeadAttention<Scalar> params;
  Masks<Scalar> masks;
  Matrix<Scalar> query, key, value;
  bool cross = false;

  // What a query whose keys are all masked returns: the output bias, or zeros.
  RowVector<Scalar> masked_row() const
  {
    return params.b_O.size() != 0 ? params.b_O : RowVector<Scalar>::Zero(params.W_O.cols());
  }
};

template <class Scalar>
AttentionCase<Scalar> load_case(const std::string& name)
{
  AttentionCase<Scalar> c;
  c.params = load_attention<Scalar>(name);
  c.masks = load_masks<Scalar>(name, 0);
  c.query = load<Scalar>(name, "query");
  c.cross = has_file(name, "key");
  c.key = c.cross ? load<Scalar>(name, "key") : c.query;
  c.value = c.cross ? load<Scalar>(name, "value") : c.query;
  return c;
}

const std::vector<std::string> attention_cases = {
    "mha_self_h1_bias",         "mha_self_h4_nobias",    "mha_self_h2_n1",
    "mha_cross_h2_bias",        "mha_cross_kvdim_h2",    "mha_kpm_h2",
    "mha_attn_bool_h4",         "mha_float_mask_h1",     "mha_causal_h2",
    "mha_kpm_attn_cross_h2",    "mha_kpm_float_h4",      "mha_fully_masked_nobias_h2",
    "mha_fully_masked_bias_h1",
};

// A single-head attention on d = 2 with identity projections and the given W_Q.
template <class Scalar>
MultiHeadAttention<Scalar> identity_attention(Eigen::Index d)
{
  MultiHeadAttention<Scalar> p;
  p.W_Q = Matrix<Scalar>::Identity(d, d);
  p.W_K = Matrix<Scalar>::Identity(d, d);
  p.W_V = Matrix<Scalar>::Identity(d, d);
  p.W_O = Matrix<Scalar>::Identity(d, d);
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Softmax and log-sum-exp

TEST_CASE("softmax_rows in float is one-hot when one logit dominates", "[softmax]")
{
  Matrix<float> z(1, 5);
  z << -250, -424, -460, 378, -293;
  const Matrix<float> w = softmax_rows(z);
  Matrix<float> expected(1, 5);
  expected << 0, 0, 0, 1, 0;
  REQUIRE(w == expected);

  // In double the other weights are tiny but representable, e.g. exp(-628).
  const Matrix<double> w64 = softmax_rows(z.cast<double>().eval());
  REQUIRE(w64(0, 3) == 1.0);
  REQUIRE(w64.sum() - 1.0 == Approx(0).margin(1e-250));
}

TEMPLATE_TEST_CASE("softmax_rows gives exact weights for logits of +-1e4", "[softmax]", float,
                   double)
{
  Matrix<TestType> z(2, 3);
  z << TestType(1e4), TestType(-1e4), TestType(1e4),  //
      TestType(-1e4), TestType(-1e4), TestType(-1e4);
  const Matrix<TestType> w = softmax_rows(z);
  Matrix<TestType> expected(2, 3);
  expected << TestType(0.5), 0, TestType(0.5),  //
      TestType(1) / 3, TestType(1) / 3, TestType(1) / 3;
  REQUIRE(w.row(0) == expected.row(0));
  REQUIRE((w.row(1) - expected.row(1)).cwiseAbs().maxCoeff() <=
          4 * std::numeric_limits<TestType>::epsilon());
}

TEMPLATE_TEST_CASE("softmax_rows and log_sum_exp_rows never give NaN on infinite logits",
                   "[softmax]", float, double)
{
  constexpr TestType inf = std::numeric_limits<TestType>::infinity();
  Matrix<TestType> z(3, 3);
  z << -inf, -inf, -inf,  //
      inf, 0, inf,        //
      -inf, 2, -inf;
  const Matrix<TestType> w = softmax_rows(z);
  Matrix<TestType> expected(3, 3);
  expected << 0, 0, 0, TestType(0.5), 0, TestType(0.5), 0, 1, 0;
  REQUIRE(w == expected);

  const unfold::Vector<TestType> lse = log_sum_exp_rows(z);
  REQUIRE(lse(0) == -inf);
  REQUIRE(lse(1) == inf);
  REQUIRE(lse(2) == TestType(2));
}

TEMPLATE_TEST_CASE("log_sum_exp_rows matches the direct formula without overflow",
                   "[softmax]", float, double)
{
  Matrix<TestType> z(2, 3);
  z << TestType(0.5), TestType(-1), TestType(2),  //
      TestType(1e4), TestType(1e4), TestType(-1e4);
  const unfold::Vector<TestType> lse = log_sum_exp_rows(z);
  const double direct = std::log(std::exp(0.5) + std::exp(-1.0) + std::exp(2.0));
  CHECK(double(lse(0)) == Approx(direct).epsilon(1e-6));
  CHECK(double(lse(1)) == Approx(1e4 + std::log(2.0)).epsilon(1e-7));
  REQUIRE(std::isfinite(lse(1)));
}

TEST_CASE("softmax_rows rejects a NaN logit, naming its position", "[softmax][errors]")
{
  Matrix<double> z = Matrix<double>::Zero(2, 3);
  z(1, 2) = std::nan("");
  REQUIRE_THROWS_WITH(softmax_rows(z),
                      Contains("unfold::reference::softmax_rows") && Contains("(1, 2)"));
  REQUIRE_THROWS_AS(log_sum_exp_rows(z), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Against PyTorch

TEMPLATE_TEST_CASE("multi_head_attention matches torch.nn.MultiheadAttention",
                   "[attention][fixture]", float, double)
{
  using Scalar = TestType;
  for (const std::string& name : attention_cases) {
    INFO("fixture " << name << " (" << Tolerance<Scalar>::tag << ")");
    const AttentionCase<Scalar> c = load_case<Scalar>(name);
    const auto& [params, masks, query, key, value, cross] = c;

    const Matrix<Scalar> out = cross ? multi_head_attention<Scalar>(query, key, value, params,
                                                                    masks)
                                     : self_attention<Scalar>(query, params, masks);
    require_matches_torch(out, load_result<Scalar>(name, "output"), c.masked_row());

    // Weights: per head, and their mean (PyTorch's average_attn_weights=True).
    const std::vector<Matrix<Scalar>> weights = attention_weights<Scalar>(query, key, params,
                                                                          masks);
    const std::vector<Matrix<Scalar>> torch_heads = load_result_stack<Scalar>(name,
                                                                             "head_weights");
    REQUIRE(weights.size() == torch_heads.size());
    const RowVector<Scalar> zeros = RowVector<Scalar>::Zero(key.rows());
    Matrix<Scalar> mean = Matrix<Scalar>::Zero(query.rows(), key.rows());
    for (std::size_t i = 0; i < weights.size(); ++i) {
      require_matches_torch(weights[i], torch_heads[i], zeros);
      mean += weights[i];
    }
    mean /= Scalar(weights.size());
    require_matches_torch(mean, load_result<Scalar>(name, "weights"), zeros);
  }
}

TEMPLATE_TEST_CASE("one workspace reused across shapes and masks gives the fresh result "
                   "bit for bit",
                   "[attention][fixture][workspace]", float, double)
{
  using Scalar = TestType;
  AttentionWorkspace<Scalar> workspace;
  Matrix<Scalar> out;

  // Forwards, then backwards: every fixture follows one with other shapes or other masks.
  std::vector<std::string> order = attention_cases;
  order.insert(order.end(), attention_cases.rbegin(), attention_cases.rend());
  for (const std::string& name : order) {
    INFO("fixture " << name << " (" << Tolerance<Scalar>::tag << ")");
    const AttentionCase<Scalar> c = load_case<Scalar>(name);
    const auto& [params, masks, query, key, value, cross] = c;

    multi_head_attention<Scalar>(query, key, value, params, masks, workspace, out);
    const Matrix<Scalar> fresh = multi_head_attention<Scalar>(query, key, value, params, masks);
    REQUIRE(out.rows() == fresh.rows());
    REQUIRE(out.cols() == fresh.cols());
    REQUIRE(out == fresh);

    require_matches_torch(out, load_result<Scalar>(name, "output"), c.masked_row());
  }
}

TEMPLATE_TEST_CASE("the workspace overload refuses an output that shares storage with an input",
                   "[attention][workspace][errors]", float, double)
{
  using Scalar = TestType;
  const MultiHeadAttention<Scalar> params = identity_attention<Scalar>(2);
  Matrix<Scalar> Y(3, 2);
  Y << 1, 0, 0, 1, 1, 1;
  const Matrix<Scalar> other = Y;
  AttentionWorkspace<Scalar> workspace;

  CHECK_THROWS_WITH(self_attention<Scalar>(Y, params, {}, workspace, Y),
                    Contains("multi_head_attention") &&
                        Contains("out (3 x 2) shares storage with query (3 x 2)"));
  CHECK_THROWS_WITH(multi_head_attention<Scalar>(other, Y.topRows(2), other, params, {},
                                                 workspace, Y),
                    Contains("shares storage with key (2 x 2)"));
  CHECK_THROWS_WITH(multi_head_attention<Scalar>(other, other, Y, params, {}, workspace, Y),
                    Contains("shares storage with value (3 x 2)"));
  CHECK(Y == other);

  CHECK_THROWS_WITH(self_attention<Scalar>(other, params, {}, workspace, workspace.H),
                    Contains("out is a buffer of workspace"));

  // A separate output is fine, and a second call on the same buffers gives the same bits.
  Matrix<Scalar> out;
  self_attention<Scalar>(Y, params, {}, workspace, out);
  const Matrix<Scalar> first = out;
  self_attention<Scalar>(Y, params, workspace, out);
  CHECK(out == first);
  CHECK(out == self_attention<Scalar>(Y, params));
}

TEMPLATE_TEST_CASE("the batch overload matches a batched torch.nn.MultiheadAttention call",
                   "[attention][fixture]", float, double)
{
  using Scalar = TestType;
  const std::string name = "mha_batch_h2";
  REQUIRE(ndims(name, "query") == 3);
  const MultiHeadAttention<Scalar> params = load_attention<Scalar>(name);
  const std::vector<Matrix<Scalar>> query = load_stack<Scalar>(name, "query");
  std::vector<Masks<Scalar>> masks;
  for (std::size_t b = 0; b < query.size(); ++b)
    masks.push_back(load_masks<Scalar>(name, Eigen::Index(b)));

  const std::vector<Matrix<Scalar>> out = self_attention(query, params, masks);
  const std::vector<Matrix<Scalar>> want = load_result_stack<Scalar>(name, "output");
  const std::vector<Matrix<Scalar>> want_weights = load_result_stack<Scalar>(name, "weights");
  REQUIRE(out.size() == want.size());
  for (std::size_t b = 0; b < out.size(); ++b) {
    INFO("sequence " << b);
    require_matches_torch(out[b], want[b], params.b_O);
    const auto heads = attention_weights<Scalar>(query[b], query[b], params, masks[b]);
    require_matches_torch<Scalar>((heads[0] + heads[1]) / Scalar(2), want_weights[b],
                                  RowVector<Scalar>::Zero(query[b].rows()));
  }
}

TEST_CASE("causal_mask equals the boolean causal mask of the fixture", "[attention][masks]")
{
  const auto stored = unfold::io::read_npy_matrix<bool>(fixture_path("mha_causal_h2",
                                                                     "attn_mask"));
  const AttentionMask mask = causal_mask(6);
  REQUIRE(mask.rows() == 6);
  REQUIRE(mask.cols() == 6);
  REQUIRE((mask.masked() == stored.array()).all());
}

// ---------------------------------------------------------------------------------------------
// Hand cases

TEMPLATE_TEST_CASE("a causal mask with zero logits averages the visible values",
                   "[attention][masks]", float, double)
{
  using Scalar = TestType;
  MultiHeadAttention<Scalar> params = identity_attention<Scalar>(2);
  params.W_Q.setZero();
  Matrix<Scalar> values(3, 2);
  values << 1, 0, 0, 1, 1, 1;
  Masks<Scalar> masks;
  masks.attention = causal_mask(3);

  const Matrix<Scalar> out = self_attention<Scalar>(values, params, masks);
  Matrix<Scalar> expected(3, 2);
  expected << 1, 0, Scalar(0.5), Scalar(0.5), Scalar(2) / 3, Scalar(2) / 3;
  CAPTURE(out);
  REQUIRE((out - expected).cwiseAbs().maxCoeff() <=
          4 * std::numeric_limits<Scalar>::epsilon());
}

TEMPLATE_TEST_CASE("a key-padding mask hides the padded key", "[attention][masks]", float,
                   double)
{
  using Scalar = TestType;
  const MultiHeadAttention<Scalar> params = identity_attention<Scalar>(2);
  Matrix<Scalar> query(1, 2);
  query << Scalar(0.3), Scalar(-0.7);
  Matrix<Scalar> keys(2, 2);
  keys << 1, 2, 3, 4;
  Masks<Scalar> masks;
  masks.key_padding = KeyPaddingMask{false, true};

  const Matrix<Scalar> out = multi_head_attention<Scalar>(query, keys, keys, params, masks);
  Matrix<Scalar> expected(1, 2);
  expected << 1, 2;
  REQUIRE(out == expected);
}

TEMPLATE_TEST_CASE("two heads of size 2 scale their raw scores by 1/sqrt(2)",
                   "[attention][heads]", float, double)
{
  using Scalar = TestType;
  MultiHeadAttention<Scalar> params = identity_attention<Scalar>(4);
  params.heads = 2;
  REQUIRE(params.effective_scale() == Scalar(1) / std::sqrt(Scalar(2)));

  // Raw scores: head 0 sees [4, 0], head 1 sees [0, 4].
  Matrix<Scalar> query(1, 4);
  query << 2, 0, 0, 1;
  Matrix<Scalar> keys(2, 4);
  keys << 2, 0, 0, 0,  //
      0, 0, 0, 4;
  const auto weights = attention_weights<Scalar>(query, keys, params);
  REQUIRE(weights.size() == 2);

  Matrix<Scalar> raw(1, 2);
  raw << 4, 0;
  const Matrix<Scalar> expected = softmax_rows(raw / std::sqrt(Scalar(2)));
  const Scalar tol = 4 * std::numeric_limits<Scalar>::epsilon();
  REQUIRE((weights[0] - expected).cwiseAbs().maxCoeff() <= tol);
  REQUIRE((weights[1] - expected.rowwise().reverse()).cwiseAbs().maxCoeff() <= tol);
}

TEMPLATE_TEST_CASE("split_heads takes consecutive column blocks and merge_heads undoes it",
                   "[attention][heads]", float, double)
{
  using Scalar = TestType;
  Matrix<Scalar> X(2, 4);
  X << 0, 1, 2, 3, 4, 5, 6, 7;
  const std::vector<Matrix<Scalar>> blocks = split_heads(X, 2);
  REQUIRE(blocks.size() == 2);
  Matrix<Scalar> first(2, 2);
  first << 0, 1, 4, 5;
  Matrix<Scalar> second(2, 2);
  second << 2, 3, 6, 7;
  REQUIRE(blocks[0] == first);
  REQUIRE(blocks[1] == second);
  REQUIRE(merge_heads(blocks) == X);
  REQUIRE_THROWS_WITH(split_heads(X, 3), Contains("split_heads") && Contains("heads = 3"));
}

TEMPLATE_TEST_CASE("a query whose keys are all masked gets zeros, not NaN",
                   "[attention][masks]", float, double)
{
  using Scalar = TestType;
  MultiHeadAttention<Scalar> params = identity_attention<Scalar>(2);
  Matrix<Scalar> Y(3, 2);
  Y << 1, 2, -1, 0, Scalar(0.5), 3;
  AttentionMask::Storage masked = AttentionMask::Storage::Constant(3, 3, false);
  masked.row(1).setConstant(true);
  Masks<Scalar> masks;
  masks.attention = AttentionMask(masked);

  const Matrix<Scalar> out = self_attention<Scalar>(Y, params, masks);
  REQUIRE(out.allFinite());
  REQUIRE(out.row(1) == RowVector<Scalar>::Zero(2));

  params.b_O = RowVector<Scalar>::Constant(2, Scalar(0.25));
  params.residual_weight = Scalar(2);
  const Matrix<Scalar> shifted = self_attention<Scalar>(Y, params, masks);
  REQUIRE(shifted.row(1) == params.b_O + Scalar(2) * Y.row(1));
}

TEMPLATE_TEST_CASE("a NaN stored in a masked-out key or value never reaches the output",
                   "[attention][masks]", float, double)
{
  using Scalar = TestType;
  MultiHeadAttention<Scalar> params = identity_attention<Scalar>(2);
  params.b_K = RowVector<Scalar>::Constant(2, Scalar(0.1));
  params.b_V = RowVector<Scalar>::Constant(2, Scalar(-0.2));
  Matrix<Scalar> query(2, 2);
  query << Scalar(0.5), -1, 2, Scalar(0.25);
  Matrix<Scalar> keys(3, 2);
  keys << 1, 2, 3, 4, -1, Scalar(0.5);
  const Matrix<Scalar> values = keys.reverse();

  SECTION("masked by the key-padding mask")
  {
    Masks<Scalar> masks;
    masks.key_padding = KeyPaddingMask{false, true, false};
    const Matrix<Scalar> clean = multi_head_attention<Scalar>(query, keys, values, params, masks);
    Matrix<Scalar> dirty_keys = keys;
    Matrix<Scalar> dirty_values = values;
    dirty_keys(1, 0) = std::numeric_limits<Scalar>::quiet_NaN();
    dirty_values.row(1).setConstant(std::numeric_limits<Scalar>::quiet_NaN());
    const Matrix<Scalar> out = multi_head_attention<Scalar>(query, dirty_keys, dirty_values,
                                                            params, masks);
    REQUIRE(out == clean);
  }

  SECTION("masked for every query by the attention mask")
  {
    AttentionMask::Storage masked = AttentionMask::Storage::Constant(2, 3, false);
    masked.col(2).setConstant(true);
    Masks<Scalar> masks;
    masks.attention = AttentionMask(masked);
    const Matrix<Scalar> clean = multi_head_attention<Scalar>(query, keys, values, params, masks);
    Matrix<Scalar> dirty_values = values;
    dirty_values(2, 1) = std::numeric_limits<Scalar>::infinity();
    const Matrix<Scalar> out = multi_head_attention<Scalar>(query, keys, dirty_values, params,
                                                            masks);
    REQUIRE(out == clean);

    // Masked for one query only: the other query reads it, so it must be finite.
    masked(0, 2) = false;
    masks.attention = AttentionMask(masked);
    REQUIRE_THROWS_WITH(multi_head_attention<Scalar>(query, keys, dirty_values, params, masks),
                        Contains("multi_head_attention") && Contains("value") &&
                            Contains("(2, 1)"));
  }
}

TEMPLATE_TEST_CASE("the single-head rectangular form is (1 - alpha) Y + alpha softmax(Y P P^T "
                   "Y^T) Y",
                   "[attention][rectangular]", float, double)
{
  using Scalar = TestType;
  const Eigen::Index n = 4;
  const Eigen::Index d = 3;
  const Eigen::Index k = 2;
  const Scalar alpha = Scalar(0.3);
  Matrix<Scalar> Y(n, d);
  Y << Scalar(0.2), -1, Scalar(0.5), 1, Scalar(0.3), Scalar(-0.4), Scalar(-0.6), Scalar(0.1),
      Scalar(0.9), 0, Scalar(0.7), Scalar(-0.2);
  Matrix<Scalar> P(d, k);
  P << 1, Scalar(0.5), Scalar(-0.3), Scalar(0.8), Scalar(0.2), Scalar(-1);

  MultiHeadAttention<Scalar> params;
  params.W_Q = P;
  params.W_K = P;
  params.W_V = Matrix<Scalar>::Identity(d, d);
  params.W_O = alpha * Matrix<Scalar>::Identity(d, d);
  params.scale = Scalar(1);
  params.residual_weight = 1 - alpha;
  const Matrix<Scalar> out = self_attention<Scalar>(Y, params);

  const Matrix<Scalar> A = softmax_rows((Y * P * P.transpose() * Y.transpose()).eval());
  const Matrix<Scalar> expected = (1 - alpha) * Y + alpha * A * Y;
  REQUIRE((out - expected).cwiseAbs().maxCoeff() <=
          16 * std::numeric_limits<Scalar>::epsilon());

  // A general value width: W_V of d x d_v and W_O of d_v x d.
  params.W_V = Matrix<Scalar>::Ones(d, 5);
  params.W_O = Matrix<Scalar>::Ones(5, d);
  REQUIRE(self_attention<Scalar>(Y, params).cols() == d);
  params.heads = 2;
  REQUIRE_THROWS_WITH(self_attention<Scalar>(Y, params),
                      Contains("d_v (columns of W_V) = 5") && Contains("heads = 2"));
}

TEST_CASE("the mask types are distinct and boolean masks accept only boolean data",
          "[attention][masks]")
{
  using FloatMatrix = Matrix<float>;
  using BoolArray = Eigen::Array<bool, Eigen::Dynamic, Eigen::Dynamic>;
  STATIC_REQUIRE(!std::is_constructible_v<AttentionMask, FloatMatrix>);
  STATIC_REQUIRE(!std::is_convertible_v<FloatMatrix, AttentionMask>);
  STATIC_REQUIRE(!std::is_constructible_v<KeyPaddingMask, unfold::Vector<float>>);
  STATIC_REQUIRE(!std::is_constructible_v<AdditiveMask<float>, BoolArray>);
  STATIC_REQUIRE(!std::is_constructible_v<AdditiveMask<float>, Matrix<double>>);
  STATIC_REQUIRE(!std::is_convertible_v<AttentionMask, KeyPaddingMask>);
  STATIC_REQUIRE(std::is_constructible_v<AttentionMask, BoolArray>);
  STATIC_REQUIRE(std::is_constructible_v<AdditiveMask<float>, FloatMatrix>);
}

TEST_CASE("bad arguments throw std::invalid_argument naming function, argument and shapes",
          "[attention][errors]")
{
  MultiHeadAttention<double> params = identity_attention<double>(4);
  params.heads = 2;
  const Matrix<double> Y = Matrix<double>::Random(3, 4);

  SECTION("query of the wrong width")
  {
    REQUIRE_THROWS_WITH(self_attention<double>(Matrix<double>::Zero(3, 5), params),
                        Contains("unfold::reference::multi_head_attention") &&
                            Contains("query has 5 columns, expected rows of W_Q (d_q) = 4"));
  }

  SECTION("value with a different number of rows than key")
  {
    REQUIRE_THROWS_WITH(multi_head_attention<double>(Y, Y, Matrix<double>::Zero(2, 4), params),
                        Contains("value has 2 rows, expected m (rows of key) = 3"));
  }

  SECTION("d not divisible by the number of heads")
  {
    params.heads = 3;
    REQUIRE_THROWS_WITH(self_attention<double>(Y, params),
                        Contains("multi_head_attention") &&
                            Contains("k (columns of W_Q) = 4 is not divisible by heads = 3"));
    params.heads = 0;
    REQUIRE_THROWS_WITH(self_attention<double>(Y, params), Contains("heads = 0"));
  }

  SECTION("inconsistent weights")
  {
    params.W_K = Matrix<double>::Zero(4, 2);
    REQUIRE_THROWS_WITH(self_attention<double>(Y, params),
                        Contains("W_K has 2 columns, expected columns of W_Q (k) = 4"));
  }

  SECTION("a bias of the wrong length")
  {
    params.b_Q = RowVector<double>::Zero(3);
    REQUIRE_THROWS_WITH(self_attention<double>(Y, params),
                        Contains("b_Q is 1 x 3, expected 1 x 4"));
  }

  SECTION("masks of the wrong size")
  {
    Masks<double> masks;
    masks.key_padding = KeyPaddingMask{false, true};
    REQUIRE_THROWS_WITH(self_attention<double>(Y, params, masks),
                        Contains("masks.key_padding has 2 entries, expected m (rows of key) = 3"));
    masks.key_padding.reset();
    masks.attention = causal_mask(4);
    REQUIRE_THROWS_WITH(self_attention<double>(Y, params, masks),
                        Contains("masks.attention is 4 x 4, expected 3 x 3"));
    masks.attention.reset();
    masks.additive = AdditiveMask(Matrix<double>::Zero(3, 2));
    REQUIRE_THROWS_WITH(self_attention<double>(Y, params, masks),
                        Contains("masks.additive is 3 x 2, expected 3 x 3"));
  }

  SECTION("an additive mask holding +inf or NaN")
  {
    Matrix<double> add = Matrix<double>::Zero(3, 3);
    add(0, 1) = std::numeric_limits<double>::infinity();
    Masks<double> masks;
    masks.additive = AdditiveMask(add);
    REQUIRE_THROWS_WITH(self_attention<double>(Y, params, masks),
                        Contains("masks.additive") && Contains("(0, 1)"));
  }

  SECTION("NaN in an input that is not masked")
  {
    Matrix<double> bad = Y;
    bad(1, 2) = std::nan("");
    REQUIRE_THROWS_WITH(self_attention<double>(bad, params),
                        Contains("multi_head_attention") && Contains("query (3 x 4)") &&
                            Contains("(1, 2)"));
    REQUIRE_THROWS_WITH(multi_head_attention<double>(Y, bad, Y, params),
                        Contains("key (3 x 4)") && Contains("(1, 2)"));
  }

  SECTION("batch lists of different lengths")
  {
    const std::vector<Matrix<double>> two = {Y, Y};
    const std::vector<Matrix<double>> one = {Y};
    REQUIRE_THROWS_WITH(multi_head_attention(two, one, two, params),
                        Contains("key has 1 entries, expected the batch size 2"));
    REQUIRE_THROWS_WITH(self_attention(two, params, std::vector<Masks<double>>(3)),
                        Contains("masks has 3 entries"));
  }

  SECTION("PyTorch weights of the wrong shape")
  {
    REQUIRE_THROWS_WITH(attention_from_torch<double>(Matrix<double>::Zero(8, 4), Matrix<double>(),
                                                     Matrix<double>::Zero(4, 4), Matrix<double>(),
                                                     2),
                        Contains("attention_from_torch") &&
                            Contains("in_proj_weight is 8 x 4, expected 12 x 4"));
  }
}

// ---------------------------------------------------------------------------------------------
// Backward pass

namespace {

using unfold::test::check_backward;
using unfold::test::random_tokens;

// One attention problem: inputs, parameters, masks and an upstream gradient.
template <class Scalar>
struct Problem {
  std::string name;
  Matrix<Scalar> query, key, value;
  MultiHeadAttention<Scalar> params;
  Masks<Scalar> masks;
  Matrix<Scalar> dOut;
};

template <class Scalar>
MultiHeadAttention<Scalar> random_attention(Eigen::Index d_q, Eigen::Index d_k,
                                            Eigen::Index d_vin, Eigen::Index k,
                                            Eigen::Index d_v, Eigen::Index d_out,
                                            Eigen::Index heads, bool biases, std::uint64_t seed)
{
  MultiHeadAttention<Scalar> p;
  p.W_Q = random_tokens<Scalar>(d_q, k, seed, 0.6);
  p.W_K = random_tokens<Scalar>(d_k, k, seed + 1, 0.6);
  p.W_V = random_tokens<Scalar>(d_vin, d_v, seed + 2, 0.6);
  p.W_O = random_tokens<Scalar>(d_v, d_out, seed + 3, 0.6);
  if (biases) {
    p.b_Q = random_tokens<Scalar>(1, k, seed + 4, 0.3);
    p.b_K = random_tokens<Scalar>(1, k, seed + 5, 0.3);
    p.b_V = random_tokens<Scalar>(1, d_v, seed + 6, 0.3);
    p.b_O = random_tokens<Scalar>(1, d_out, seed + 7, 0.3);
  }
  p.heads = heads;
  return p;
}

// Self-attention, cross-attention of other widths, one token, duplicate tokens, and masks of
// every kind, including a query whose keys are all masked and a key no query reads.
template <class Scalar>
std::vector<Problem<Scalar>> backward_problems()
{
  std::vector<Problem<Scalar>> out;
  auto add = [&](std::string name, Eigen::Index n, Eigen::Index m,
                 MultiHeadAttention<Scalar> params, std::uint64_t seed) -> Problem<Scalar>& {
    Problem<Scalar> p;
    p.name = std::move(name);
    p.query = random_tokens<Scalar>(n, params.W_Q.rows(), seed);
    p.key = random_tokens<Scalar>(m, params.W_K.rows(), seed + 1);
    p.value = random_tokens<Scalar>(m, params.W_V.rows(), seed + 2);
    p.dOut = random_tokens<Scalar>(n, params.W_O.cols(), seed + 3);
    p.params = std::move(params);
    out.push_back(std::move(p));
    return out.back();
  };

  auto& self = add("self h1, biases, residual", 4, 4,
                   random_attention<Scalar>(3, 3, 3, 3, 3, 3, 1, true, 100), 110);
  self.key = self.value = self.query;
  self.params.residual_weight = Scalar(0.4);

  add("cross h2, all widths differ", 3, 5, random_attention<Scalar>(4, 3, 2, 4, 6, 5, 2, true, 200),
      210);
  add("one query, one key", 1, 1, random_attention<Scalar>(2, 2, 2, 2, 2, 2, 1, true, 300), 310);
  add("width 1", 3, 2, random_attention<Scalar>(1, 1, 1, 1, 1, 1, 1, false, 400), 410);

  auto& twins = add("duplicate tokens, causal, h2, scale 0.7", 4, 4,
                    random_attention<Scalar>(4, 4, 4, 4, 4, 4, 2, true, 500), 510);
  twins.query.row(3) = twins.query.row(1);
  twins.key = twins.value = twins.query;
  twins.params.scale = Scalar(0.7);
  twins.masks.attention = causal_mask(4);

  auto& masked = add("boolean masks: query 1 sees no key, key 3 is padded", 3, 4,
                     random_attention<Scalar>(4, 4, 4, 4, 4, 4, 2, true, 600), 610);
  AttentionMask::Storage pairs = AttentionMask::Storage::Constant(3, 4, false);
  pairs.row(1).setConstant(true);
  pairs(2, 0) = true;
  masked.masks.attention = AttentionMask(pairs);
  masked.masks.key_padding = KeyPaddingMask{false, false, false, true};

  auto& additive = add("additive mask with finite shifts and -inf, h1", 3, 3,
                       random_attention<Scalar>(2, 2, 2, 2, 2, 2, 1, false, 700), 710);
  Matrix<Scalar> shift = random_tokens<Scalar>(3, 3, 720);
  shift.row(0).setConstant(-std::numeric_limits<Scalar>::infinity());
  shift(2, 1) = -std::numeric_limits<Scalar>::infinity();
  additive.masks.additive = AdditiveMask(shift);
  return out;
}

template <class Scalar>
Matrix<Scalar> forward(const Problem<Scalar>& p)
{
  return multi_head_attention<Scalar>(p.query, p.key, p.value, p.params, p.masks);
}

template <class Scalar>
AttentionGradient<Scalar> backward(const Problem<Scalar>& p)
{
  return multi_head_attention_backward<Scalar>(p.query, p.key, p.value, p.params, p.dOut,
                                               p.masks);
}

// Central differences of sum(dOut .* out) in the argument `field` of the problem, against the
// gradient `grad` picks; biases are 1 x w matrices here.
template <class Scalar, class Field, class Grad>
void check_argument(const Problem<Scalar>& p, const std::string& what, Field field, Grad grad)
{
  Problem<Scalar> probe = p;
  auto& slot = field(probe);
  const Matrix<Scalar> at = slot;
  const auto result = check_backward<Scalar>(
      [&](const Matrix<Scalar>& X) {
        slot = X;
        return forward(probe);
      },
      [&](const Matrix<Scalar>& X) {
        slot = X;
        return Matrix<Scalar>(grad(backward(probe)));
      },
      at, p.dOut);
  INFO(p.name << ", d" << what << ": worst ratio " << result.worst_ratio << ", relative error "
              << result.relative_error << ", absolute error " << result.absolute_error);
  CHECK(result.passed());
}

}  // namespace

TEMPLATE_TEST_CASE("multi_head_attention_backward matches central differences in every "
                   "input and parameter",
                   "[attention][backward]", float, double)
{
  using Scalar = TestType;
  using P = Problem<Scalar>;
  using G = AttentionGradient<Scalar>;
  for (const P& p : backward_problems<Scalar>()) {
    INFO("problem: " << p.name);
    check_argument(p, "query", [](P& q) -> auto& { return q.query; },
                   [](const G& g) { return g.dQuery; });
    check_argument(p, "key", [](P& q) -> auto& { return q.key; },
                   [](const G& g) { return g.dKey; });
    check_argument(p, "value", [](P& q) -> auto& { return q.value; },
                   [](const G& g) { return g.dValue; });
    check_argument(p, "W_Q", [](P& q) -> auto& { return q.params.W_Q; },
                   [](const G& g) { return g.dW_Q; });
    check_argument(p, "W_K", [](P& q) -> auto& { return q.params.W_K; },
                   [](const G& g) { return g.dW_K; });
    check_argument(p, "W_V", [](P& q) -> auto& { return q.params.W_V; },
                   [](const G& g) { return g.dW_V; });
    check_argument(p, "W_O", [](P& q) -> auto& { return q.params.W_O; },
                   [](const G& g) { return g.dW_O; });
    const G g = backward(p);
    if (p.params.b_Q.size() == 0) {
      CHECK(g.db_Q.size() == 0);
      CHECK(g.db_O.size() == 0);
      continue;
    }
    check_argument(p, "b_Q", [](P& q) -> auto& { return q.params.b_Q; },
                   [](const G& h) { return h.db_Q; });
    check_argument(p, "b_K", [](P& q) -> auto& { return q.params.b_K; },
                   [](const G& h) { return h.db_K; });
    check_argument(p, "b_V", [](P& q) -> auto& { return q.params.b_V; },
                   [](const G& h) { return h.db_V; });
    CHECK(g.db_O == p.dOut.colwise().sum());
  }
}

TEMPLATE_TEST_CASE("self_attention_backward is the gradient in Y, the sum of the three",
                   "[attention][backward]", float, double)
{
  using Scalar = TestType;
  MultiHeadAttention<Scalar> params = random_attention<Scalar>(4, 4, 4, 4, 4, 4, 2, true, 800);
  params.residual_weight = Scalar(0.5);
  Matrix<Scalar> Y = random_tokens<Scalar>(5, 4, 810);
  Y.row(4) = Y.row(0);  // a duplicate token
  const Matrix<Scalar> dOut = random_tokens<Scalar>(5, 4, 820);
  for (const bool causal : {false, true}) {
    Masks<Scalar> masks;
    if (causal)
      masks.attention = causal_mask(5);
    const AttentionGradient<Scalar> g = self_attention_backward<Scalar>(Y, params, dOut, masks);
    const AttentionGradient<Scalar> cross =
        multi_head_attention_backward<Scalar>(Y, Y, Y, params, dOut, masks);
    REQUIRE(g.summed_inputs() == cross.summed_inputs());
    const auto result = check_backward<Scalar>(
        [&](const Matrix<Scalar>& X) { return self_attention<Scalar>(X, params, masks); },
        [&](const Matrix<Scalar>& X) {
          return self_attention_backward<Scalar>(X, params, dOut, masks).summed_inputs();
        },
        Y, dOut);
    INFO("causal " << causal << ": worst ratio " << result.worst_ratio << ", relative error "
                   << result.relative_error);
    CHECK(result.passed());
  }
}

TEMPLATE_TEST_CASE("a query whose keys are all masked gets a zero output row and a zero "
                   "gradient, on every path",
                   "[attention][backward][masks]", float, double)
{
  using Scalar = TestType;
  constexpr Scalar inf = std::numeric_limits<Scalar>::infinity();
  const Eigen::Index n = 3;
  const Eigen::Index d = 4;

  // Query 1 loses every key: by a boolean mask, by -inf in an additive mask, or (query 0) by a
  // causal mask whose only visible key is padded.
  std::vector<std::pair<std::string, Masks<Scalar>>> paths;
  {
    AttentionMask::Storage pairs = AttentionMask::Storage::Constant(n, n, false);
    pairs.row(1).setConstant(true);
    Masks<Scalar> masks;
    masks.attention = AttentionMask(pairs);
    paths.emplace_back("boolean attention mask", masks);
  }
  {
    Matrix<Scalar> add = random_tokens<Scalar>(n, n, 901);
    add.row(1).setConstant(-inf);
    Masks<Scalar> masks;
    masks.additive = AdditiveMask(add);
    paths.emplace_back("additive mask", masks);
  }
  {
    Masks<Scalar> masks;
    masks.key_padding = KeyPaddingMask{false, false, false};
    Matrix<Scalar> add = Matrix<Scalar>::Zero(n, n);
    add(1, 0) = add(1, 2) = -inf;
    masks.additive = AdditiveMask(add);
    AttentionMask::Storage pairs = AttentionMask::Storage::Constant(n, n, false);
    pairs(1, 1) = true;
    masks.attention = AttentionMask(pairs);
    paths.emplace_back("additive and boolean masks together", masks);
  }
  {
    Masks<Scalar> masks;
    masks.attention = causal_mask(n);
    masks.key_padding = KeyPaddingMask{true, false, false};
    paths.emplace_back("causal mask with key 0 padded (query 0)", masks);
  }

  for (const Eigen::Index heads : {1, 2})
    for (const auto& [path, masks] : paths) {
      const Eigen::Index blind = path.starts_with("causal") ? 0 : 1;
      INFO(path << ", " << heads << " head(s), query " << blind);
      const MultiHeadAttention<Scalar> params =
          random_attention<Scalar>(d, d, d, d, d, d, heads, false, 910);
      const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, 920);
      const Matrix<Scalar> out = self_attention<Scalar>(Y, params, masks);
      REQUIRE(out.allFinite());
      REQUIRE(out.row(blind) == RowVector<Scalar>::Zero(d));

      // An upstream gradient on the blind row only: nothing else moves it, and every gradient
      // is exactly zero, through the free function and the recorded layer alike.
      Matrix<Scalar> dOut = Matrix<Scalar>::Zero(n, d);
      dOut.row(blind) = random_tokens<Scalar>(1, d, 930);
      RecordedAttention<Scalar> recorded(params);
      REQUIRE(recorded.forward(Y, masks) == out);
      for (const AttentionGradient<Scalar>& g :
           {self_attention_backward<Scalar>(Y, params, dOut, masks), recorded.backward(dOut)}) {
        for (const Matrix<Scalar>* m : {&g.dQuery, &g.dKey, &g.dValue, &g.dW_Q, &g.dW_K,
                                        &g.dW_V, &g.dW_O}) {
          REQUIRE(m->allFinite());
          REQUIRE(m->cwiseAbs().maxCoeff() == Scalar(0));
        }
      }

      // A full upstream gradient: finite, and the blind query's own gradient row is zero.
      const Matrix<Scalar> full = random_tokens<Scalar>(n, d, 940);
      const AttentionGradient<Scalar> g = self_attention_backward<Scalar>(Y, params, full, masks);
      for (const Matrix<Scalar>* m : {&g.dQuery, &g.dKey, &g.dValue, &g.dW_Q, &g.dW_K, &g.dW_V,
                                      &g.dW_O})
        REQUIRE(m->allFinite());
      const AttentionGradient<Scalar> cross =
          multi_head_attention_backward<Scalar>(Y, Y, Y, params, full, masks);
      REQUIRE(cross.dQuery.row(blind) == RowVector<Scalar>::Zero(d));
    }
}

TEMPLATE_TEST_CASE("a NaN stored in a masked-out key or value never reaches a gradient",
                   "[attention][backward][masks]", float, double)
{
  using Scalar = TestType;
  const MultiHeadAttention<Scalar> params =
      random_attention<Scalar>(2, 2, 2, 2, 2, 3, 1, true, 1000);
  const Matrix<Scalar> query = random_tokens<Scalar>(2, 2, 1010);
  const Matrix<Scalar> keys = random_tokens<Scalar>(3, 2, 1020);
  const Matrix<Scalar> values = random_tokens<Scalar>(3, 2, 1030);
  const Matrix<Scalar> dOut = random_tokens<Scalar>(2, 3, 1040);
  Masks<Scalar> masks;
  masks.key_padding = KeyPaddingMask{false, true, false};

  const AttentionGradient<Scalar> clean =
      multi_head_attention_backward<Scalar>(query, keys, values, params, dOut, masks);
  Matrix<Scalar> dirty_keys = keys;
  Matrix<Scalar> dirty_values = values;
  dirty_keys(1, 1) = std::numeric_limits<Scalar>::quiet_NaN();
  dirty_values.row(1).setConstant(std::numeric_limits<Scalar>::infinity());
  const AttentionGradient<Scalar> dirty =
      multi_head_attention_backward<Scalar>(query, dirty_keys, dirty_values, params, dOut, masks);
  REQUIRE(dirty.dKey == clean.dKey);
  REQUIRE(dirty.dValue == clean.dValue);
  REQUIRE(dirty.dW_K == clean.dW_K);
  REQUIRE(dirty.dW_V == clean.dW_V);
  REQUIRE(dirty.dQuery == clean.dQuery);
  REQUIRE(clean.dKey.row(1) == RowVector<Scalar>::Zero(2));
  REQUIRE(clean.dValue.row(1) == RowVector<Scalar>::Zero(2));
}

TEMPLATE_TEST_CASE("RecordedAttention records the forward pass for its backward pass",
                   "[attention][backward][order]", float, double)
{
  using Scalar = TestType;
  const Problem<Scalar> p = backward_problems<Scalar>()[5];  // boolean masks, two heads
  RecordedAttention<Scalar> attention(p.params);
  REQUIRE_FALSE(attention.recorded());
  REQUIRE_THROWS_MATCHES(attention.backward(p.dOut), std::logic_error,
                         Catch::Matchers::Message(
                             "unfold::reference::RecordedAttention::backward: no forward pass "
                             "is recorded; call forward(query, key, value, masks) first"));

  REQUIRE(attention.forward(p.query, p.key, p.value, p.masks) == forward(p));
  REQUIRE(attention.recorded());
  const AttentionGradient<Scalar> want = backward(p);
  for (int repeat = 0; repeat < 2; ++repeat) {
    const AttentionGradient<Scalar> g = attention.backward(p.dOut);
    REQUIRE(g.dQuery == want.dQuery);
    REQUIRE(g.dKey == want.dKey);
    REQUIRE(g.dValue == want.dValue);
    REQUIRE(g.dW_Q == want.dW_Q);
    REQUIRE(g.dW_K == want.dW_K);
    REQUIRE(g.dW_V == want.dW_V);
    REQUIRE(g.dW_O == want.dW_O);
    REQUIRE(g.db_Q == want.db_Q);
    REQUIRE(g.db_K == want.db_K);
    REQUIRE(g.db_V == want.db_V);
    REQUIRE(g.db_O == want.db_O);
  }

  // A bad dOut is a bad argument, not a wrong order.
  REQUIRE_THROWS_WITH(attention.backward(Matrix<Scalar>::Zero(3, 3)),
                      Contains("RecordedAttention::backward") &&
                          Contains("dOut is 3 x 3, expected 3 x 4"));

  // A forward that throws records nothing: no gradient of a stale input.
  REQUIRE_THROWS_AS(attention.forward(p.query, p.key, Matrix<Scalar>::Zero(2, 4), p.masks),
                    std::invalid_argument);
  REQUIRE_FALSE(attention.recorded());
  REQUIRE_THROWS_AS(attention.backward(p.dOut), std::logic_error);

  attention.forward(p.query, p.key, p.value, p.masks);
  attention.clear();
  REQUIRE_THROWS_WITH(attention.backward(p.dOut), Contains("first"));

  MultiHeadAttention<Scalar> bad = p.params;
  bad.heads = 3;
  REQUIRE_THROWS_WITH(RecordedAttention<Scalar>(bad),
                      Contains("unfold::reference::RecordedAttention") &&
                          Contains("heads = 3"));
}

TEST_CASE("attention backward passes reject bad arguments, naming function, argument and shapes",
          "[attention][backward][errors]")
{
  MultiHeadAttention<double> params = identity_attention<double>(4);
  params.heads = 2;
  const Matrix<double> Y = Matrix<double>::Random(3, 4);
  REQUIRE_THROWS_WITH(self_attention_backward<double>(Y, params, Matrix<double>::Zero(3, 2)),
                      Contains("unfold::reference::self_attention_backward") &&
                          Contains("dOut is 3 x 2, expected 3 x 4"));
  REQUIRE_THROWS_WITH(multi_head_attention_backward<double>(Y, Y, Y, params,
                                                            Matrix<double>::Zero(4, 4)),
                      Contains("unfold::reference::multi_head_attention_backward") &&
                          Contains("dOut is 4 x 4, expected 3 x 4"));
  Matrix<double> dOut = Matrix<double>::Zero(3, 4);
  dOut(2, 0) = std::nan("");
  REQUIRE_THROWS_WITH(self_attention_backward<double>(Y, params, dOut),
                      Contains("self_attention_backward") &&
                          Contains("dOut (3 x 4) has a non-finite entry nan at (2, 0)"));
  REQUIRE_THROWS_WITH(multi_head_attention_backward<double>(Y, Y, Matrix<double>::Zero(2, 4),
                                                            params, Matrix<double>::Zero(3, 4)),
                      Contains("multi_head_attention_backward") &&
                          Contains("value has 2 rows, expected m (rows of key) = 3"));
  Matrix<double> bad = Y;
  bad(0, 1) = std::nan("");
  REQUIRE_THROWS_WITH(self_attention_backward<double>(bad, params, Matrix<double>::Zero(3, 4)),
                      Contains("self_attention_backward") && Contains("query (3 x 4)"));
}

TEMPLATE_TEST_CASE("attention by blocks of queries equals the weights of all queries at once",
                   "[attention][blocks]", float, double)
{
  using Scalar = TestType;
  using Tol = Tolerance<Scalar>;

  // A block holds 1 MiB of weights or 128 queries, whichever is more.
  CHECK(detail::query_block<float>(512) == 512);
  CHECK(detail::query_block<double>(512) == 256);
  CHECK(detail::query_block<float>(1) == 262144);
  CHECK(detail::query_block<double>(2500) == 128);

  // 300 queries over 2500 keys run in blocks of 128, 128 and 44 in either type; over 1000 keys
  // in blocks of 262 and 38 in float, of 131, 131 and 38 in double.
  const Eigen::Index m = GENERATE(Eigen::Index(2500), Eigen::Index(1000));
  const Eigen::Index n = 300;
  INFO("m = " << m);
  const MultiHeadAttention<Scalar> params = random_attention<Scalar>(6, 5, 4, 8, 6, 7, 2, true,
                                                                     900);
  const Matrix<Scalar> query = random_tokens<Scalar>(n, 6, 901);
  const Matrix<Scalar> key = random_tokens<Scalar>(m, 5, 902);
  const Matrix<Scalar> value = random_tokens<Scalar>(m, 4, 903);

  // Every kind of mask, and query 200 (in the second block) sees no key at all.
  Masks<Scalar> masks;
  KeyPaddingMask::Storage padded = KeyPaddingMask::Storage::Zero(m);
  padded.segment(100, 50).setConstant(true);
  masks.key_padding = KeyPaddingMask(padded);
  AttentionMask::Storage hidden = AttentionMask::Storage::Zero(n, m);
  for (Eigen::Index i = 0; i < n; ++i)
    hidden(i, (7 * i) % m) = true;
  hidden.row(200).setConstant(true);
  masks.attention = AttentionMask(hidden);
  masks.additive = AdditiveMask(random_tokens<Scalar>(n, m, 904, 0.5));

  for (const Masks<Scalar>& case_masks : {Masks<Scalar>{}, masks}) {
    const Matrix<Scalar> out = multi_head_attention<Scalar>(query, key, value, params,
                                                            case_masks);
    RecordedAttention<Scalar> recorded(params);
    CHECK(recorded.forward(query, key, value, case_masks) == out);

    // The same layer from the n x m weights of each head, made in one piece.
    const std::vector<Matrix<Scalar>> weights = attention_weights<Scalar>(query, key, params,
                                                                          case_masks);
    Matrix<Scalar> V = value * params.W_V;
    V.rowwise() += params.b_V;
    Matrix<Scalar> H(n, 6);
    for (Eigen::Index h = 0; h < 2; ++h)
      H.middleCols(3 * h, 3) = weights[std::size_t(h)] * V.middleCols(3 * h, 3);
    Matrix<Scalar> want = H * params.W_O;
    want.rowwise() += params.b_O;

    const double error = double((out - want).cwiseAbs().maxCoeff());
    INFO("max |blocks - whole| = " << error);
    CHECK(error <= Tol::atol + Tol::rtol * double(want.cwiseAbs().maxCoeff()));
  }
  CHECK(multi_head_attention<Scalar>(query, key, value, params, masks).row(200) == params.b_O);
}

TEMPLATE_TEST_CASE("a workspace forgets the masks of its last call", "[attention][workspace]",
                   float, double)
{
  using Scalar = TestType;
  const Eigen::Index n = 5, d = 4;
  const MultiHeadAttention<Scalar> params = random_attention<Scalar>(d, d, d, d, d, d, 2, true,
                                                                     950);
  const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, 951);

  Masks<Scalar> padded, hidden, shifted;
  padded.key_padding = KeyPaddingMask{false, true, false, false, true};
  hidden.attention = causal_mask(n);
  shifted.additive = AdditiveMask(random_tokens<Scalar>(n, n, 952));

  // The same shape every time, so a mask left behind would be read, not go out of bounds.
  AttentionWorkspace<Scalar> workspace;
  Matrix<Scalar> out;
  for (const Masks<Scalar>* masks : {&padded, &hidden, &shifted}) {
    self_attention<Scalar>(Y, params, *masks, workspace, out);
    CHECK(out == self_attention<Scalar>(Y, params, *masks));
    self_attention<Scalar>(Y, params, {}, workspace, out);
    CHECK(out == self_attention<Scalar>(Y, params));
  }
}
