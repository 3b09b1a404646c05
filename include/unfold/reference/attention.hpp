#pragma once

/// \file
/// Multi-head attention computed the way torch.nn.MultiheadAttention computes it, written
/// independently of the energy code (it depends on unfold/core only).
///
/// PyTorch conventions matched (torch 1.13, `F.multi_head_attention_forward`, eval mode):
/// - Tokens are rows and weights multiply from the right, `Y W`. PyTorch stores the transposes.
///   With E = embed_dim and `in_proj_weight` of shape 3E x E:
///   `W_Q = in_proj_weight[0:E]^T`, `W_K = in_proj_weight[E:2E]^T`,
///   `W_V = in_proj_weight[2E:3E]^T`, `b_Q, b_K, b_V` = the three thirds of `in_proj_bias`,
///   `W_O = out_proj.weight^T`, `b_O = out_proj.bias`. When kdim or vdim differ from E, PyTorch
///   keeps `q_proj_weight` (E x E), `k_proj_weight` (E x kdim), `v_proj_weight` (E x vdim)
///   instead, and each W is the transpose of its block. `attention_from_torch` applies this map.
/// - Head i reads columns [i k/h, (i+1) k/h) of Q and K and [i d_v/h, (i+1) d_v/h) of V; the
///   head outputs are concatenated in head order before `W_O`.
/// - The scale, 1/sqrt(k/h) by default, multiplies Q before the product Q K^T (PyTorch divides
///   q by sqrt(head_dim) there); the masks are added to the scaled scores.
/// - Mask polarity as in PyTorch: in a boolean mask `true` means "masked", the pair is ignored.
///   The key-padding mask (m entries) applies to every query and head; the attention masks
///   (n x m) apply to every head. An additive float mask is added to the scaled scores, and
///   its -inf entries count as masked. Per-head (3-D) masks are not supported.
///
/// Deliberate differences from PyTorch:
/// - A query row whose keys are all masked gets zero attention weights, so its output row is
///   `b_O` (plus the residual term); PyTorch returns NaN for that row.
/// - A key/value row masked for every query is never read: a NaN or inf stored there does not
///   reach the output (in PyTorch it does, through 0 * NaN). A non-finite entry in any row that
///   is read throws `std::invalid_argument`.
/// - Dropout is absent (eval mode); `bias_k`, `bias_v` and `add_zero_attn` are not modelled.
///
/// The backward pass (`multi_head_attention_backward`, `self_attention_backward`,
/// `RecordedAttention`) is the vector-Jacobian product of the same computation, masks and scale
/// held constant. It keeps the deliberate differences: a query whose keys are all masked gets a
/// zero gradient, and a key or value masked for every query is never read.

#include "unfold/core/types.hpp"
#include "unfold/core/validate.hpp"
#include "unfold/reference/detail.hpp"
#include "unfold/reference/softmax.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unfold::reference {

/// \brief Key-padding mask: m booleans, `true` = this key is ignored by every query (PyTorch's
/// `key_padding_mask` polarity).
///
/// A distinct type from `AttentionMask` and `AdditiveMask`, and constructible from boolean data
/// only, so a 0/1 float matrix cannot be passed where a boolean mask is expected.
class KeyPaddingMask {
 public:
  using Storage = Eigen::Array<bool, Eigen::Dynamic, 1>;

  KeyPaddingMask() = default;

  /// In: `masked`, a boolean row or column vector of m entries.
  template <class Derived>
    requires std::same_as<typename Derived::Scalar, bool>
  explicit KeyPaddingMask(const Eigen::DenseBase<Derived>& masked)
  {
    if (masked.rows() != 1 && masked.cols() != 1)
      unfold::detail::fail("unfold::reference::KeyPaddingMask",
                           "masked is " + unfold::detail::shape_of(masked) +
                               ", expected a vector of m entries");
    masked_.resize(masked.size());
    for (Eigen::Index j = 0; j < masked.size(); ++j)
      masked_(j) = masked.rows() == 1 ? masked(0, j) : masked(j, 0);
  }

  /// In: the m flags in key order, e.g. `KeyPaddingMask{false, true}`.
  KeyPaddingMask(std::initializer_list<bool> masked) : masked_(Eigen::Index(masked.size()))
  {
    Eigen::Index j = 0;
    for (const bool flag : masked)
      masked_(j++) = flag;
  }

  /// The m flags, `true` = masked.
  [[nodiscard]] const Storage& masked() const { return masked_; }

  [[nodiscard]] Eigen::Index size() const { return masked_.size(); }

  [[nodiscard]] bool operator()(Eigen::Index j) const { return masked_(j); }

 private:
  Storage masked_;
};

/// \brief Boolean attention mask: n x m, `true` = query i ignores key j (PyTorch's boolean
/// `attn_mask` polarity).
///
/// Constructible from boolean data only; see `causal_mask` for the usual triangle.
class AttentionMask {
 public:
  using Storage = Eigen::Array<bool, Eigen::Dynamic, Eigen::Dynamic>;

  AttentionMask() = default;

  /// In: `masked`, a boolean n x m expression.
  template <class Derived>
    requires std::same_as<typename Derived::Scalar, bool>
  explicit AttentionMask(const Eigen::DenseBase<Derived>& masked) : masked_(masked)
  {
  }

  /// The n x m flags, `true` = masked.
  [[nodiscard]] const Storage& masked() const { return masked_; }

  [[nodiscard]] Eigen::Index rows() const { return masked_.rows(); }

  [[nodiscard]] Eigen::Index cols() const { return masked_.cols(); }

  [[nodiscard]] bool operator()(Eigen::Index i, Eigen::Index j) const { return masked_(i, j); }

 private:
  Storage masked_;
};

/// \brief Additive float mask: n x m values added to the scaled scores (PyTorch's float
/// `attn_mask`). Entries must be finite or -inf; -inf masks the pair.
/// \tparam Scalar float or double, the scalar of the attention it is used with.
template <Real Scalar>
class AdditiveMask {
 public:
  AdditiveMask() = default;

  /// In: `values`, an n x m expression of the same scalar type.
  template <class Derived>
    requires std::same_as<typename Derived::Scalar, Scalar>
  explicit AdditiveMask(const Eigen::DenseBase<Derived>& values) : values_(values)
  {
  }

  /// The n x m values.
  [[nodiscard]] const Matrix<Scalar>& values() const { return values_; }

 private:
  Matrix<Scalar> values_;
};

template <class Derived>
AdditiveMask(const Eigen::DenseBase<Derived>&) -> AdditiveMask<typename Derived::Scalar>;

/// \brief The masks of one attention call; any subset may be given and they combine: a pair is
/// masked if any boolean mask says so or the additive mask holds -inf there.
template <Real Scalar>
struct Masks {
  std::optional<KeyPaddingMask> key_padding;  ///< m keys, true = ignored
  std::optional<AttentionMask> attention;     ///< n x m, true = ignored
  std::optional<AdditiveMask<Scalar>> additive;  ///< n x m, added to the scaled scores
};

/// \brief Causal mask for a sequence of n tokens: query i may attend to keys 0..i only, so
/// entry (i, j) is masked for j > i (the boolean form of PyTorch's square subsequent mask).
inline AttentionMask causal_mask(Eigen::Index n)
{
  if (n < 0)
    unfold::detail::fail("unfold::reference::causal_mask",
                         "n = " + std::to_string(n) + ", expected n >= 0");
  AttentionMask::Storage masked(n, n);
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index i = 0; i < n; ++i)
      masked(i, j) = j > i;
  return AttentionMask(masked);
}

/// \brief Parameters of (multi-head) attention `concat_i softmax(s Q_i K_i^T + M) V_i W_O`.
///
/// Shapes, for queries X_q (n x d_q), keys X_k (m x d_k) and values X_v (m x d_vin):
/// `W_Q` d_q x k, `W_K` d_k x k, `W_V` d_vin x d_v, `W_O` d_v x d_out; the biases are 1 x k,
/// 1 x k, 1 x d_v, 1 x d_out, or empty for none. `heads` must divide k and d_v. A
/// torch.nn.MultiheadAttention is the case d_q = d_k = d_vin = k = d_v = d_out = E.
///
/// The single-head form covers the unfolded steps, e.g. `W_Q = W_K = P` (d x k), `scale = 1`,
/// `W_V = I`, `W_O = alpha I`, `residual_weight = 1 - alpha`.
template <Real Scalar>
struct MultiHeadAttention {
  Matrix<Scalar> W_Q;     ///< d_q x k, query projection
  Matrix<Scalar> W_K;     ///< d_k x k, key projection
  Matrix<Scalar> W_V;     ///< d_vin x d_v, value projection
  Matrix<Scalar> W_O;     ///< d_v x d_out, output projection
  RowVector<Scalar> b_Q;  ///< 1 x k, or empty
  RowVector<Scalar> b_K;  ///< 1 x k, or empty
  RowVector<Scalar> b_V;  ///< 1 x d_v, or empty
  RowVector<Scalar> b_O;  ///< 1 x d_out, or empty
  Eigen::Index heads = 1;  ///< h, dividing k and d_v
  std::optional<Scalar> scale;  ///< multiplies Q K^T; unset = 1 / sqrt(k / h)
  Scalar residual_weight = Scalar(0);  ///< output += residual_weight * X_q (needs d_out = d_q)

  /// k, the width of the query and key projections.
  [[nodiscard]] Eigen::Index key_width() const { return W_Q.cols(); }

  /// d_v, the width of the value projection.
  [[nodiscard]] Eigen::Index value_width() const { return W_V.cols(); }

  /// The scale applied to the scores: `scale` if set, else 1 / sqrt(k / h).
  [[nodiscard]] Scalar effective_scale() const
  {
    if (scale)
      return *scale;
    return Scalar(1) / std::sqrt(Scalar(W_Q.cols() / heads));
  }
};

/// \brief Splits the columns of X (n x c) into `heads` consecutive blocks of c / h columns:
/// block i is columns [i c/h, (i+1) c/h), the layout PyTorch's `view(..., h, head_dim)` gives.
/// \throws std::invalid_argument if h < 1 or h does not divide c.
template <class Derived>
  requires Real<typename Derived::Scalar>
std::vector<Matrix<typename Derived::Scalar>> split_heads(const Eigen::MatrixBase<Derived>& X,
                                                          Eigen::Index heads)
{
  detail::require_divisible("unfold::reference::split_heads", "columns of X", X.cols(), "heads",
                            heads);
  const Eigen::Index width = X.cols() / heads;
  std::vector<Matrix<typename Derived::Scalar>> blocks;
  blocks.reserve(std::size_t(heads));
  for (Eigen::Index i = 0; i < heads; ++i)
    blocks.emplace_back(X.middleCols(i * width, width));
  return blocks;
}

/// \brief Concatenates head blocks (each n x w) side by side into n x (h w); undoes
/// `split_heads`.
/// \throws std::invalid_argument if the list is empty or the blocks differ in shape.
template <Real Scalar>
Matrix<Scalar> merge_heads(const std::vector<Matrix<Scalar>>& blocks)
{
  constexpr std::string_view who = "unfold::reference::merge_heads";
  if (blocks.empty())
    unfold::detail::fail(who, "blocks is empty, expected at least one head");
  const Eigen::Index rows = blocks.front().rows();
  const Eigen::Index width = blocks.front().cols();
  for (std::size_t i = 1; i < blocks.size(); ++i)
    unfold::detail::require_shape(who, "blocks[" + std::to_string(i) + "]", blocks[i], rows,
                                  width);

  Matrix<Scalar> out(rows, width * Eigen::Index(blocks.size()));
  for (std::size_t i = 0; i < blocks.size(); ++i)
    out.middleCols(Eigen::Index(i) * width, width) = blocks[i];
  return out;
}

namespace detail {

/// Checks every field of the parameters against each other.
template <Real Scalar>
void validate(std::string_view who, const MultiHeadAttention<Scalar>& p)
{
  using unfold::detail::require_cols;
  using unfold::detail::require_finite;
  using unfold::detail::require_nonempty;
  using unfold::detail::require_rows;

  require_nonempty(who, "W_Q", p.W_Q);
  require_nonempty(who, "W_K", p.W_K);
  require_nonempty(who, "W_V", p.W_V);
  require_nonempty(who, "W_O", p.W_O);
  require_cols(who, "W_K", p.W_K, p.key_width(), "columns of W_Q (k)");
  require_rows(who, "W_O", p.W_O, p.value_width(), "columns of W_V (d_v)");
  require_finite(who, "W_Q", p.W_Q);
  require_finite(who, "W_K", p.W_K);
  require_finite(who, "W_V", p.W_V);
  require_finite(who, "W_O", p.W_O);

  require_divisible(who, "k (columns of W_Q)", p.key_width(), "heads", p.heads);
  require_divisible(who, "d_v (columns of W_V)", p.value_width(), "heads", p.heads);

  require_optional_row(who, "b_Q", p.b_Q, p.key_width());
  require_optional_row(who, "b_K", p.b_K, p.key_width());
  require_optional_row(who, "b_V", p.b_V, p.value_width());
  require_optional_row(who, "b_O", p.b_O, p.W_O.cols());

  if (p.scale)
    require_finite_scalar(who, "scale", *p.scale);
  require_finite_scalar(who, "residual_weight", p.residual_weight);
  if (p.residual_weight != Scalar(0))
    require_cols(who, "W_O", p.W_O, p.W_Q.rows(), "rows of W_Q (d_q, for the residual)");
}

/// The n x m pairs that are masked, combining every mask given (true = masked).
template <Real Scalar>
AttentionMask::Storage combine_masks(std::string_view who, Eigen::Index n, Eigen::Index m,
                                     const Masks<Scalar>& masks)
{
  AttentionMask::Storage masked = AttentionMask::Storage::Constant(n, m, false);

  if (masks.key_padding) {
    if (masks.key_padding->size() != m) {
      std::ostringstream out;
      out << "masks.key_padding has " << masks.key_padding->size()
          << " entries, expected m (rows of key) = " << m;
      unfold::detail::fail(who, out.str());
    }
    for (Eigen::Index j = 0; j < m; ++j)
      if ((*masks.key_padding)(j))
        masked.col(j).setConstant(true);
  }

  if (masks.attention) {
    unfold::detail::require_shape(who, "masks.attention", masks.attention->masked(), n, m);
    masked = masked || masks.attention->masked();
  }

  // Additive entries: finite values shift the scores, -inf masks the pair.
  if (masks.additive) {
    const Matrix<Scalar>& add = masks.additive->values();
    unfold::detail::require_shape(who, "masks.additive", add, n, m);
    for (Eigen::Index j = 0; j < m; ++j)
      for (Eigen::Index i = 0; i < n; ++i) {
        if (std::isnan(add(i, j)) || add(i, j) == std::numeric_limits<Scalar>::infinity()) {
          std::ostringstream out;
          out << "masks.additive (" << n << " x " << m << ") has " << add(i, j) << " at (" << i
              << ", " << j << "), expected finite values or -inf";
          unfold::detail::fail(who, out.str());
        }
        if (std::isinf(add(i, j)))
          masked(i, j) = true;
      }
  }
  return masked;
}

/// Copies into `out` the rows of `X` that some query reads, zeroes the others (never reading
/// them), and throws if a row that is read holds a non-finite entry.
template <Real Scalar>
void read_rows(std::string_view who, std::string_view arg, const ConstRef<Scalar>& X,
               const Eigen::Array<bool, Eigen::Dynamic, 1>& used, Matrix<Scalar>& out)
{
  if (used.all() && X.allFinite()) {
    out = X;
    return;
  }

  out.setZero(X.rows(), X.cols());
  for (Eigen::Index j = 0; j < X.rows(); ++j)
    if (used(j)) {
      require_finite_row(who, arg, X, j, "not masked for every query");
      out.row(j) = X.row(j);
    }
}

/// Adds a bias row to every row of `Y`, unless the bias is empty.
template <Real Scalar>
void add_bias(Matrix<Scalar>& Y, const RowVector<Scalar>& b)
{
  if (b.size() != 0)
    Y.rowwise() += b;
}

/// Everything the attention weights need: projected, scaled queries and keys and the masks.
template <Real Scalar>
struct Scores {
  Matrix<Scalar> Q;                                ///< n x k, already multiplied by the scale
  Matrix<Scalar> K;                                ///< m x k, masked-out rows projected from 0
  Matrix<Scalar> X_k;                              ///< m x d_k, the keys read, the others 0
  AttentionMask::Storage masked;                   ///< n x m, true = masked; empty: none
  Matrix<Scalar> additive;                         ///< n x m, or empty
  Eigen::Array<bool, Eigen::Dynamic, 1> used;      ///< m, key j is read by some query
  bool any_masked = false;                         ///< some pair is masked
};

/// Fills `s` for these inputs, reusing its storage where the shapes allow.
template <Real Scalar>
void prepare_scores(std::string_view who, const ConstRef<Scalar>& query,
                    const ConstRef<Scalar>& key, const MultiHeadAttention<Scalar>& p,
                    const Masks<Scalar>& masks, Scores<Scalar>& s)
{
  validate(who, p);
  unfold::detail::require_nonempty(who, "query", query);
  unfold::detail::require_cols(who, "query", query, p.W_Q.rows(), "rows of W_Q (d_q)");
  unfold::detail::require_finite(who, "query", query);
  unfold::detail::require_nonempty(who, "key", key);
  unfold::detail::require_cols(who, "key", key, p.W_K.rows(), "rows of W_K (d_k)");

  // A workspace used before with masks may still hold them.
  s.masked.resize(0, 0);
  s.additive.resize(0, 0);
  s.any_masked = false;
  if (masks.key_padding || masks.attention || masks.additive) {
    s.masked = combine_masks(who, query.rows(), key.rows(), masks);
    if (masks.additive)
      s.additive = masks.additive->values();
    s.used = (!s.masked).colwise().any().transpose();
    s.any_masked = s.masked.any();
  } else {
    s.used.setConstant(key.rows(), true);
  }

  // Q = s (X_q W_Q + b_Q), n x k; K = X_k W_K + b_K, m x k, over the keys that are read.
  s.Q.noalias() = query * p.W_Q;
  add_bias(s.Q, p.b_Q);
  s.Q *= p.effective_scale();
  read_rows<Scalar>(who, "key", key, s.used, s.X_k);
  s.K.noalias() = s.X_k * p.W_K;
  add_bias(s.K, p.b_K);
}

template <Real Scalar>
Scores<Scalar> prepare_scores(std::string_view who, const ConstRef<Scalar>& query,
                              const ConstRef<Scalar>& key, const MultiHeadAttention<Scalar>& p,
                              const Masks<Scalar>& masks)
{
  Scores<Scalar> s;
  prepare_scores(who, query, key, p, masks, s);
  return s;
}

/// Queries per block of `attend`: as many as keep one block's weights (m x count) within
/// 1 MiB, so that they stay in cache, and at least 128. The buffer is reused from block to
/// block instead of holding all n x m weights. Fewer blocks repack the keys fewer times: at
/// m = 512 in float one block of 512 queries ran 20 % faster than four of 128.
template <Real Scalar>
Eigen::Index query_block(Eigen::Index m)
{
  constexpr std::size_t budget = std::size_t(1) << 20;
  const std::size_t column = sizeof(Scalar) * std::size_t(std::max<Eigen::Index>(m, 1));
  return std::max<Eigen::Index>(Eigen::Index(budget / column), 128);
}

/// Weights of head `head` for the queries from `q0` on, by column, into `logits` (m x count):
/// column i is the softmax over the keys of query q0 + i of Q_i K_i^T + additive, masked to
/// -inf. Columns are contiguous, so the softmax runs vectorised, and a product A V reads this
/// matrix transposed at no cost.
template <Real Scalar>
void head_weights_by_column(const Scores<Scalar>& s, Eigen::Index head, Eigen::Index width,
                            Eigen::Index q0, Eigen::Ref<Matrix<Scalar>> logits)
{
  const Eigen::Index count = logits.cols();
  logits.noalias() = s.K.middleCols(head * width, width) *
                     s.Q.block(q0, head * width, count, width).transpose();
  if (s.additive.size() != 0)
    logits += s.additive.middleRows(q0, count).transpose();

  if (s.any_masked)
    for (Eigen::Index i = 0; i < count; ++i)
      for (Eigen::Index j = 0; j < logits.rows(); ++j)
        if (s.masked(q0 + i, j))
          logits(j, i) = -std::numeric_limits<Scalar>::infinity();
  softmax_columns_in_place<Scalar>(logits);
}

/// Head `head` of attention, block of queries by block: writes A_i V_i into its columns of H
/// (n x d_v) and, when `A` is given, the weights A_i (n x m) into it. `weights` holds one block
/// of queries; sized once, so that a shorter last block takes its first columns.
template <Real Scalar>
void attend(const Scores<Scalar>& s, const Matrix<Scalar>& V, Eigen::Index head,
            Eigen::Index key_width, Eigen::Index value_width, Matrix<Scalar>& H,
            Matrix<Scalar>& weights, Matrix<Scalar>* A = nullptr)
{
  const Eigen::Index n = s.Q.rows();
  if (A)
    A->resize(n, s.K.rows());
  const Eigen::Index block = std::min(query_block<Scalar>(s.K.rows()), n);
  weights.resize(s.K.rows(), block);
  for (Eigen::Index q0 = 0; q0 < n; q0 += block) {
    const Eigen::Index count = std::min(block, n - q0);
    auto logits = weights.leftCols(count);
    head_weights_by_column<Scalar>(s, head, key_width, q0, logits);
    H.block(q0, head * value_width, count, value_width).noalias() =
        logits.transpose() * V.middleCols(head * value_width, value_width);
    if (A)
      A->middleRows(q0, count) = logits.transpose();
  }
}

/// Weights of head `head` (n x m): softmax over keys of Q_i K_i^T + additive, masked to -inf.
template <Real Scalar>
Matrix<Scalar> head_weights(const Scores<Scalar>& s, Eigen::Index head, Eigen::Index width)
{
  Matrix<Scalar> by_column(s.K.rows(), s.Q.rows());
  head_weights_by_column<Scalar>(s, head, width, 0, by_column);
  return by_column.transpose();
}

/// V = X_v W_V + b_V (m x d_v) over the values some query reads; `X_v` receives those rows
/// (the others zero), as the backward pass needs them for dW_V.
template <Real Scalar>
void project_values(std::string_view who, const ConstRef<Scalar>& value, Eigen::Index m,
                    const MultiHeadAttention<Scalar>& p,
                    const Eigen::Array<bool, Eigen::Dynamic, 1>& used, Matrix<Scalar>& X_v,
                    Matrix<Scalar>& V)
{
  unfold::detail::require_rows(who, "value", value, m, "m (rows of key)");
  unfold::detail::require_cols(who, "value", value, p.W_V.rows(), "rows of W_V (d_vin)");
  read_rows<Scalar>(who, "value", value, used, X_v);
  V.resize(X_v.rows(), p.value_width());
  V.noalias() = X_v * p.W_V;
  add_bias(V, p.b_V);
}

/// Whether the storage of `out` overlaps that of `X`.
template <Real Scalar>
bool overlaps(const Matrix<Scalar>& out, const ConstRef<Scalar>& X)
{
  if (out.size() == 0 || X.size() == 0)
    return false;
  const Scalar* first = X.data();
  const Scalar* last = X.data() + (X.cols() - 1) * X.outerStride() + X.rows();
  return std::less<const Scalar*>()(out.data(), last) &&
         std::less<const Scalar*>()(first, out.data() + out.size());
}

template <class T>
void require_batch_size(std::string_view who, std::string_view arg, const std::vector<T>& v,
                        std::size_t size)
{
  if (v.size() != size) {
    std::ostringstream out;
    out << arg << " has " << v.size() << " entries, expected the batch size " << size;
    unfold::detail::fail(who, out.str());
  }
}

}  // namespace detail

/// \brief Attention weights of each head, softmax(s Q_i K_i^T + M), one n x m matrix per head.
///
/// In: `query` X_q (n x d_q), `key` X_k (m x d_k), the parameters, the masks. Out: h matrices of
/// n x m whose rows sum to 1, or are zero where every key is masked. PyTorch's
/// `need_weights=True` output is their mean (`average_attn_weights=True`) or the list itself.
/// \throws std::invalid_argument on inconsistent shapes, h not dividing k or d_v, masks of the
/// wrong size, or a non-finite entry that is read.
template <Real Scalar>
std::vector<Matrix<Scalar>> attention_weights(const detail::ConstRef<Scalar>& query,
                                              const detail::ConstRef<Scalar>& key,
                                              const MultiHeadAttention<Scalar>& params,
                                              const Masks<Scalar>& masks = {})
{
  constexpr std::string_view who = "unfold::reference::attention_weights";
  const detail::Scores<Scalar> scores = detail::prepare_scores(who, query, key, params, masks);

  const Eigen::Index width = params.key_width() / params.heads;
  std::vector<Matrix<Scalar>> weights;
  weights.reserve(std::size_t(params.heads));
  for (Eigen::Index i = 0; i < params.heads; ++i)
    weights.push_back(detail::head_weights(scores, i, width));
  return weights;
}

/// \brief The buffers of multi-head attention: projections, masks and one block of weights.
///
/// A caller that keeps one workspace between calls of the same shapes keeps every buffer of
/// n, m or n x m entries from one call to the next; what is still allocated per call is Eigen's
/// packing space inside a product and, when masks are given, their combined n x m copy. The
/// result does not depend on what the workspace held before.
template <Real Scalar>
struct AttentionWorkspace {
  detail::Scores<Scalar> scores;  ///< the scaled queries, the keys and the masks
  Matrix<Scalar> X_v;             ///< m x d_vin, the values read, the others 0
  Matrix<Scalar> V;               ///< m x d_v, the projected values
  Matrix<Scalar> H;               ///< n x d_v, the concatenated head outputs
  Matrix<Scalar> weights;         ///< one block of weights: 1 MiB or 128 queries, the larger
};

/// \brief Multi-head attention of queries over keys and values, as torch.nn.MultiheadAttention
/// with batch_first semantics for one sequence (see the file notes for the conventions), into
/// caller-owned storage.
///
/// Computes `[A_1 V_1, ..., A_h V_h] W_O + b_O + residual_weight X_q` with
/// `A_i = softmax(s Q_i K_i^T + M)`, `Q = X_q W_Q + b_Q`, `K = X_k W_K + b_K`,
/// `V = X_v W_V + b_V`.
/// In: `query` X_q (n x d_q), `key` X_k (m x d_k), `value` X_v (m x d_vin), the parameters and
/// masks; `workspace`, buffers reused from call to call. Out: `out`, resized to n x d_out; it
/// must not share storage with `query`, `key`, `value` or the workspace.
/// \throws std::invalid_argument naming the argument and shapes on any inconsistency, on h not
/// dividing k or d_v, on a non-finite entry in a row that is read, and when `out` overlaps an
/// input or is a buffer of the workspace.
template <Real Scalar>
void multi_head_attention(const detail::ConstRef<Scalar>& query,
                          const detail::ConstRef<Scalar>& key,
                          const detail::ConstRef<Scalar>& value,
                          const MultiHeadAttention<Scalar>& params, const Masks<Scalar>& masks,
                          AttentionWorkspace<Scalar>& workspace, Matrix<Scalar>& out)
{
  constexpr std::string_view who = "unfold::reference::multi_head_attention";
  for (const auto& [arg, X] : {std::pair{"query", &query}, std::pair{"key", &key},
                               std::pair{"value", &value}})
    if (detail::overlaps(out, *X))
      unfold::detail::fail(who, std::string("out (") + unfold::detail::shape_of(out) +
                                    ") shares storage with " + arg + " (" +
                                    unfold::detail::shape_of(*X) + "), expected separate storage");

  for (const Matrix<Scalar>* buffer :
       {&workspace.scores.Q, &workspace.scores.K, &workspace.scores.X_k, &workspace.X_v,
        &workspace.V, &workspace.H, &workspace.weights})
    if (&out == buffer)
      unfold::detail::fail(who, "out is a buffer of workspace, expected separate storage");

  detail::Scores<Scalar>& scores = workspace.scores;
  detail::prepare_scores(who, query, key, params, masks, scores);

  // V = X_v W_V + b_V, m x d_v, over the values that are read.
  detail::project_values<Scalar>(who, value, key.rows(), params, scores.used, workspace.X_v,
                                 workspace.V);

  // Head i writes A_i V_i into its block of columns of the concatenation H, n x d_v.
  const Eigen::Index key_width = params.key_width() / params.heads;
  const Eigen::Index value_width = params.value_width() / params.heads;
  workspace.H.resize(query.rows(), params.value_width());
  for (Eigen::Index i = 0; i < params.heads; ++i)
    detail::attend(scores, workspace.V, i, key_width, value_width, workspace.H,
                   workspace.weights);

  // out = H W_O + b_O + residual_weight X_q, n x d_out.
  out.resize(query.rows(), params.W_O.cols());
  out.noalias() = workspace.H * params.W_O;
  detail::add_bias(out, params.b_O);
  if (params.residual_weight != Scalar(0))
    out += params.residual_weight * query;
}

/// \brief Multi-head attention of queries over keys and values, as torch.nn.MultiheadAttention
/// with batch_first semantics for one sequence (see the file notes for the conventions).
///
/// The same computation as the overload with a workspace, in fresh storage.
/// In: `query` X_q (n x d_q), `key` X_k (m x d_k), `value` X_v (m x d_vin), the parameters and
/// masks. Out: n x d_out.
/// \throws std::invalid_argument naming the argument and shapes on any inconsistency, on h not
/// dividing k or d_v, and on a non-finite entry in a row that is read.
template <Real Scalar>
Matrix<Scalar> multi_head_attention(const detail::ConstRef<Scalar>& query,
                                    const detail::ConstRef<Scalar>& key,
                                    const detail::ConstRef<Scalar>& value,
                                    const MultiHeadAttention<Scalar>& params,
                                    const Masks<Scalar>& masks = {})
{
  AttentionWorkspace<Scalar> workspace;
  Matrix<Scalar> out;
  multi_head_attention<Scalar>(query, key, value, params, masks, workspace, out);
  return out;
}

/// \brief Self-attention: `multi_head_attention(Y, Y, Y, params, masks)`, Y of n x d.
template <Real Scalar>
Matrix<Scalar> self_attention(const detail::ConstRef<Scalar>& Y,
                              const MultiHeadAttention<Scalar>& params,
                              const Masks<Scalar>& masks = {})
{
  return multi_head_attention<Scalar>(Y, Y, Y, params, masks);
}

/// \brief Self-attention into caller-owned storage, reusing `workspace`:
/// `multi_head_attention(Y, Y, Y, params, masks, workspace, out)`; `out` must not be `Y`.
template <Real Scalar>
void self_attention(const detail::ConstRef<Scalar>& Y, const MultiHeadAttention<Scalar>& params,
                    const Masks<Scalar>& masks, AttentionWorkspace<Scalar>& workspace,
                    Matrix<Scalar>& out)
{
  multi_head_attention<Scalar>(Y, Y, Y, params, masks, workspace, out);
}

/// \brief Self-attention without masks into caller-owned storage, reusing `workspace`.
template <Real Scalar>
void self_attention(const detail::ConstRef<Scalar>& Y, const MultiHeadAttention<Scalar>& params,
                    AttentionWorkspace<Scalar>& workspace, Matrix<Scalar>& out)
{
  multi_head_attention<Scalar>(Y, Y, Y, params, Masks<Scalar>{}, workspace, out);
}

/// \brief Batch of independent sequences, like a batch_first PyTorch call with
/// `key_padding_mask` of shape N x m: entry b of the result is
/// `multi_head_attention(query[b], key[b], value[b], params, masks[b])`.
///
/// In: three lists of equal length N; `masks` empty (no masks) or of length N. Sequences may
/// differ in length. Out: N matrices, entry b of n_b x d_out.
template <Real Scalar>
std::vector<Matrix<Scalar>> multi_head_attention(const std::vector<Matrix<Scalar>>& query,
                                                 const std::vector<Matrix<Scalar>>& key,
                                                 const std::vector<Matrix<Scalar>>& value,
                                                 const MultiHeadAttention<Scalar>& params,
                                                 const std::vector<Masks<Scalar>>& masks = {})
{
  constexpr std::string_view who = "unfold::reference::multi_head_attention";
  detail::require_batch_size(who, "key", key, query.size());
  detail::require_batch_size(who, "value", value, query.size());
  if (!masks.empty())
    detail::require_batch_size(who, "masks", masks, query.size());

  std::vector<Matrix<Scalar>> out;
  out.reserve(query.size());
  for (std::size_t b = 0; b < query.size(); ++b)
    out.push_back(multi_head_attention<Scalar>(query[b], key[b], value[b], params,
                                               masks.empty() ? Masks<Scalar>{} : masks[b]));
  return out;
}

/// \brief Batch of self-attention calls, one per sequence; `masks` empty or one per sequence.
template <Real Scalar>
std::vector<Matrix<Scalar>> self_attention(const std::vector<Matrix<Scalar>>& Y,
                                           const MultiHeadAttention<Scalar>& params,
                                           const std::vector<Masks<Scalar>>& masks = {})
{
  return multi_head_attention(Y, Y, Y, params, masks);
}

/// \brief The gradients of multi-head attention given the upstream gradient dOut: one entry
/// per input and parameter. A bias that is absent (empty) gets an empty gradient.
template <Real Scalar>
struct AttentionGradient {
  Matrix<Scalar> dQuery;  ///< n x d_q
  Matrix<Scalar> dKey;    ///< m x d_k; zero in the rows of keys masked for every query
  Matrix<Scalar> dValue;  ///< m x d_vin; zero in the same rows
  Matrix<Scalar> dW_Q;    ///< d_q x k
  Matrix<Scalar> dW_K;    ///< d_k x k
  Matrix<Scalar> dW_V;    ///< d_vin x d_v
  Matrix<Scalar> dW_O;    ///< d_v x d_out
  RowVector<Scalar> db_Q;  ///< 1 x k, or empty
  RowVector<Scalar> db_K;  ///< 1 x k, or empty
  RowVector<Scalar> db_V;  ///< 1 x d_v, or empty
  RowVector<Scalar> db_O;  ///< 1 x d_out, or empty

  /// dQuery + dKey + dValue: the gradient with respect to Y of self-attention, where query,
  /// key and value are all Y (n x d).
  [[nodiscard]] Matrix<Scalar> summed_inputs() const { return dQuery + dKey + dValue; }
};

namespace detail {

/// What the backward pass of attention reads from its forward pass.
template <Real Scalar>
struct AttentionRecord {
  Matrix<Scalar> X_q;             ///< n x d_q, the queries
  Scores<Scalar> scores;          ///< scaled Q, K, the keys read and the masks
  Matrix<Scalar> X_v;             ///< m x d_vin, the values read, the others 0
  Matrix<Scalar> V;               ///< m x d_v
  std::vector<Matrix<Scalar>> A;  ///< one n x m weight matrix per head
  Matrix<Scalar> H;               ///< n x d_v, the concatenated head outputs
};

/// The forward pass of `multi_head_attention`, keeping what the backward pass needs; writes
/// the n x d_out output into `out`.
template <Real Scalar>
AttentionRecord<Scalar> record_attention(std::string_view who, const ConstRef<Scalar>& query,
                                         const ConstRef<Scalar>& key,
                                         const ConstRef<Scalar>& value,
                                         const MultiHeadAttention<Scalar>& p,
                                         const Masks<Scalar>& masks, Matrix<Scalar>& out)
{
  AttentionRecord<Scalar> r;
  r.scores = prepare_scores(who, query, key, p, masks);
  project_values<Scalar>(who, value, key.rows(), p, r.scores.used, r.X_v, r.V);
  r.X_q = query;

  const Eigen::Index key_width = p.key_width() / p.heads;
  const Eigen::Index value_width = p.value_width() / p.heads;
  r.H.resize(query.rows(), p.value_width());
  r.A.reserve(std::size_t(p.heads));
  Matrix<Scalar> weights;
  for (Eigen::Index i = 0; i < p.heads; ++i) {
    // The same code as multi_head_attention, so the two forward passes agree bit for bit.
    r.A.emplace_back();
    attend(r.scores, r.V, i, key_width, value_width, r.H, weights, &r.A.back());
  }

  out.resize(query.rows(), p.W_O.cols());
  out.noalias() = r.H * p.W_O;
  add_bias(out, p.b_O);
  if (p.residual_weight != Scalar(0))
    out += p.residual_weight * query;
  return r;
}

/// Column sums of `G` when the bias is present, else empty.
template <Real Scalar>
RowVector<Scalar> bias_gradient(const RowVector<Scalar>& b, const Matrix<Scalar>& G)
{
  if (b.size() == 0)
    return RowVector<Scalar>();
  return G.colwise().sum();
}

/// The vector-Jacobian product of attention at a recorded forward pass.
template <Real Scalar>
AttentionGradient<Scalar> attention_backward(std::string_view who,
                                             const AttentionRecord<Scalar>& r,
                                             const MultiHeadAttention<Scalar>& p,
                                             const ConstRef<Scalar>& dOut)
{
  const Eigen::Index n = r.X_q.rows();
  const Eigen::Index m = r.V.rows();
  unfold::detail::require_shape(who, "dOut", dOut, n, p.W_O.cols());
  unfold::detail::require_finite(who, "dOut", dOut);

  AttentionGradient<Scalar> g;
  g.dW_O.noalias() = r.H.transpose() * dOut;
  if (p.b_O.size() != 0)
    g.db_O = dOut.colwise().sum();
  Matrix<Scalar> dH(n, p.value_width());
  dH.noalias() = dOut * p.W_O.transpose();

  // Per head, with A = softmax(L): dA = dH_i V_i^T, dV_i = A^T dH_i and the softmax
  // Jacobian dL = A .* (dA - rowsum(A .* dA)). A masked pair has A = 0, so dL = 0 there, and a
  // query whose keys are all masked gets a zero row: no 0 * inf, no NaN.
  const Eigen::Index key_width = p.key_width() / p.heads;
  const Eigen::Index value_width = p.value_width() / p.heads;
  Matrix<Scalar> dQ(n, p.key_width());
  Matrix<Scalar> dK(m, p.key_width());
  Matrix<Scalar> dV(m, p.value_width());
  Matrix<Scalar> dA(n, m);
  for (Eigen::Index i = 0; i < p.heads; ++i) {
    const Matrix<Scalar>& A = r.A[std::size_t(i)];
    const auto dH_i = dH.middleCols(i * value_width, value_width);
    dA.noalias() = dH_i * r.V.middleCols(i * value_width, value_width).transpose();
    dV.middleCols(i * value_width, value_width).noalias() = A.transpose() * dH_i;
    const Vector<Scalar> inner = (A.array() * dA.array()).rowwise().sum().matrix();
    const Matrix<Scalar> dL = (A.array() * (dA.colwise() - inner).array()).matrix();
    dQ.middleCols(i * key_width, key_width).noalias() =
        dL * r.scores.K.middleCols(i * key_width, key_width);
    dK.middleCols(i * key_width, key_width).noalias() =
        dL.transpose() * r.scores.Q.middleCols(i * key_width, key_width);
  }

  // The stored Q is scaled: Q = s (X_q W_Q + b_Q), so the unscaled projection gets s dQ.
  dQ *= p.effective_scale();
  g.dQuery.noalias() = dQ * p.W_Q.transpose();
  if (p.residual_weight != Scalar(0))
    g.dQuery += p.residual_weight * dOut;
  g.dW_Q.noalias() = r.X_q.transpose() * dQ;
  g.db_Q = bias_gradient(p.b_Q, dQ);

  // Keys and values masked for every query have zero rows in dK and dV, and zero rows in the
  // recorded inputs, so their entries (possibly NaN) never reach a gradient.
  g.dKey.noalias() = dK * p.W_K.transpose();
  g.dW_K.noalias() = r.scores.X_k.transpose() * dK;
  g.db_K = bias_gradient(p.b_K, dK);
  g.dValue.noalias() = dV * p.W_V.transpose();
  g.dW_V.noalias() = r.X_v.transpose() * dV;
  g.db_V = bias_gradient(p.b_V, dV);
  return g;
}

}  // namespace detail

/// \brief The vector-Jacobian product of `multi_head_attention(query, key, value, params,
/// masks)` with the upstream gradient dOut: the gradients of `sum(dOut .* out)` with respect to
/// the three inputs and every weight and bias.
///
/// In: the arguments of `multi_head_attention`, and `dOut` n x d_out, finite. Out: see
/// `AttentionGradient`. The masks and the scale are constants. A query whose keys are all
/// masked contributes nothing to any gradient but db_O (and, through the residual,
/// residual_weight dOut to its own row of dQuery); keys and values masked for every query get
/// zero rows and are never read.
/// \throws std::invalid_argument as `multi_head_attention` does, and on a dOut that is not
/// n x d_out or holds a non-finite entry.
template <Real Scalar>
AttentionGradient<Scalar> multi_head_attention_backward(const detail::ConstRef<Scalar>& query,
                                                        const detail::ConstRef<Scalar>& key,
                                                        const detail::ConstRef<Scalar>& value,
                                                        const MultiHeadAttention<Scalar>& params,
                                                        const detail::ConstRef<Scalar>& dOut,
                                                        const Masks<Scalar>& masks = {})
{
  constexpr std::string_view who = "unfold::reference::multi_head_attention_backward";
  Matrix<Scalar> out;
  const detail::AttentionRecord<Scalar> record =
      detail::record_attention<Scalar>(who, query, key, value, params, masks, out);
  return detail::attention_backward<Scalar>(who, record, params, dOut);
}

/// \brief The vector-Jacobian product of `self_attention(Y, params, masks)`; the gradient with
/// respect to Y is `summed_inputs()` of the result.
template <Real Scalar>
AttentionGradient<Scalar> self_attention_backward(const detail::ConstRef<Scalar>& Y,
                                                  const MultiHeadAttention<Scalar>& params,
                                                  const detail::ConstRef<Scalar>& dOut,
                                                  const Masks<Scalar>& masks = {})
{
  constexpr std::string_view who = "unfold::reference::self_attention_backward";
  Matrix<Scalar> out;
  const detail::AttentionRecord<Scalar> record =
      detail::record_attention<Scalar>(who, Y, Y, Y, params, masks, out);
  return detail::attention_backward<Scalar>(who, record, params, dOut);
}

/// \brief Multi-head attention that records its forward pass (the inputs read, Q, K, V, the
/// weights of every head) so that `backward` reuses it instead of recomputing the softmax.
///
/// Call order: `forward(...)`, then any number of `backward(dOut)` calls, which differentiate
/// at the inputs of the last successful forward. `backward` before any forward, after a
/// forward that threw, or after `clear()`, throws `std::logic_error`. The record holds h n x m
/// weight matrices. Not safe to share between threads while forward runs.
template <Real Scalar>
class RecordedAttention {
 public:
  /// \throws std::invalid_argument on inconsistent parameters, as `multi_head_attention` does.
  explicit RecordedAttention(MultiHeadAttention<Scalar> params) : params_(std::move(params))
  {
    detail::validate("unfold::reference::RecordedAttention", params_);
  }

  /// `multi_head_attention(query, key, value, params(), masks)`, recorded.
  /// \throws std::invalid_argument as `multi_head_attention` does; nothing is recorded then.
  Matrix<Scalar> forward(const ConstMatrixRef<Scalar>& query, const ConstMatrixRef<Scalar>& key,
                         const ConstMatrixRef<Scalar>& value, const Masks<Scalar>& masks = {})
  {
    record_.reset();
    Matrix<Scalar> out;
    record_ = detail::record_attention<Scalar>("unfold::reference::RecordedAttention::forward",
                                               query, key, value, params_, masks, out);
    return out;
  }

  /// `self_attention(Y, params(), masks)`, recorded; the gradient with respect to Y is then
  /// `backward(dOut).summed_inputs()`.
  Matrix<Scalar> forward(const ConstMatrixRef<Scalar>& Y, const Masks<Scalar>& masks = {})
  {
    return forward(Y, Y, Y, masks);
  }

  /// The vector-Jacobian product at the recorded forward pass; see
  /// `multi_head_attention_backward`.
  /// \throws std::logic_error when no forward pass is recorded; std::invalid_argument on a dOut
  /// that is not n x d_out or not finite.
  [[nodiscard]] AttentionGradient<Scalar> backward(const ConstMatrixRef<Scalar>& dOut) const
  {
    constexpr std::string_view who = "unfold::reference::RecordedAttention::backward";
    if (!record_)
      throw std::logic_error(std::string(who) + ": no forward pass is recorded; call "
                                                "forward(query, key, value, masks) first");
    return detail::attention_backward<Scalar>(who, *record_, params_, dOut);
  }

  /// Whether a forward pass is recorded, i.e. whether `backward` may be called.
  [[nodiscard]] bool recorded() const { return record_.has_value(); }

  /// Drops the recorded forward pass and its memory.
  void clear() { record_.reset(); }

  [[nodiscard]] const MultiHeadAttention<Scalar>& params() const { return params_; }

 private:
  MultiHeadAttention<Scalar> params_;
  std::optional<detail::AttentionRecord<Scalar>> record_;
};

/// \brief Parameters of a torch.nn.MultiheadAttention(E, h) with equal q/k/v widths.
///
/// In: `in_proj_weight` 3E x E, `in_proj_bias` 1 x 3E (or empty), `out_proj_weight` E x E,
/// `out_proj_bias` 1 x E (or empty), `heads` h. Sets `W_Q = in_proj_weight[0:E]^T`,
/// `W_K = in_proj_weight[E:2E]^T`, `W_V = in_proj_weight[2E:3E]^T`, `W_O = out_proj_weight^T`
/// and splits the bias in three. Call as `attention_from_torch<double>(...)`.
template <Real Scalar>
MultiHeadAttention<Scalar> attention_from_torch(const ConstMatrixRef<Scalar>& in_proj_weight,
                                                const ConstMatrixRef<Scalar>& in_proj_bias,
                                                const ConstMatrixRef<Scalar>& out_proj_weight,
                                                const ConstMatrixRef<Scalar>& out_proj_bias,
                                                Eigen::Index heads)
{
  constexpr std::string_view who = "unfold::reference::attention_from_torch";
  const Eigen::Index E = in_proj_weight.cols();
  unfold::detail::require_nonempty(who, "in_proj_weight", in_proj_weight);
  unfold::detail::require_shape(who, "in_proj_weight", in_proj_weight, 3 * E, E);
  unfold::detail::require_shape(who, "out_proj_weight", out_proj_weight, E, E);
  detail::require_optional_row(who, "in_proj_bias", in_proj_bias, 3 * E);
  detail::require_optional_row(who, "out_proj_bias", out_proj_bias, E);

  MultiHeadAttention<Scalar> p;
  p.W_Q = in_proj_weight.topRows(E).transpose();
  p.W_K = in_proj_weight.middleRows(E, E).transpose();
  p.W_V = in_proj_weight.bottomRows(E).transpose();
  p.W_O = out_proj_weight.transpose();
  if (in_proj_bias.size() != 0) {
    p.b_Q = in_proj_bias.leftCols(E);
    p.b_K = in_proj_bias.middleCols(E, E);
    p.b_V = in_proj_bias.rightCols(E);
  }
  if (out_proj_bias.size() != 0)
    p.b_O = out_proj_bias;
  p.heads = heads;
  detail::validate(who, p);
  return p;
}

/// \brief Parameters of a torch.nn.MultiheadAttention(E, h, kdim=d_k, vdim=d_vin), which keeps
/// separate projections.
///
/// In: `q_proj_weight` E x E, `k_proj_weight` E x d_k, `v_proj_weight` E x d_vin,
/// `in_proj_bias` 1 x 3E (or empty), `out_proj_weight` E x E, `out_proj_bias` 1 x E (or empty).
/// Each W is the transpose of its PyTorch block.
template <Real Scalar>
MultiHeadAttention<Scalar> attention_from_torch(const ConstMatrixRef<Scalar>& q_proj_weight,
                                                const ConstMatrixRef<Scalar>& k_proj_weight,
                                                const ConstMatrixRef<Scalar>& v_proj_weight,
                                                const ConstMatrixRef<Scalar>& in_proj_bias,
                                                const ConstMatrixRef<Scalar>& out_proj_weight,
                                                const ConstMatrixRef<Scalar>& out_proj_bias,
                                                Eigen::Index heads)
{
  constexpr std::string_view who = "unfold::reference::attention_from_torch";
  const Eigen::Index E = q_proj_weight.rows();
  unfold::detail::require_nonempty(who, "q_proj_weight", q_proj_weight);
  unfold::detail::require_shape(who, "q_proj_weight", q_proj_weight, E, E);
  unfold::detail::require_rows(who, "k_proj_weight", k_proj_weight, E, "E");
  unfold::detail::require_rows(who, "v_proj_weight", v_proj_weight, E, "E");
  unfold::detail::require_shape(who, "out_proj_weight", out_proj_weight, E, E);
  detail::require_optional_row(who, "in_proj_bias", in_proj_bias, 3 * E);
  detail::require_optional_row(who, "out_proj_bias", out_proj_bias, E);

  MultiHeadAttention<Scalar> p;
  p.W_Q = q_proj_weight.transpose();
  p.W_K = k_proj_weight.transpose();
  p.W_V = v_proj_weight.transpose();
  p.W_O = out_proj_weight.transpose();
  if (in_proj_bias.size() != 0) {
    p.b_Q = in_proj_bias.leftCols(E);
    p.b_K = in_proj_bias.middleCols(E, E);
    p.b_V = in_proj_bias.rightCols(E);
  }
  if (out_proj_bias.size() != 0)
    p.b_O = out_proj_bias;
  p.heads = heads;
  detail::validate(who, p);
  return p;
}

}  // namespace unfold::reference
