#pragma once

/// \file
/// How far any reference Transformer layer (reference/, for instance one loaded from PyTorch) is
/// from the layers that are descent steps on an explicit energy, and the nearest such layer.
///
/// The energy-compatible set (MATH.md 1.1, 1.2, 1.4 and 2):
/// - attention, head h: the scores are a symmetric positive semi-definite bilinear form
///   `s W_Q^h W_K^h^T = U_h U_h^T` and the value map is `W_V^h W_O^h = alpha U_h U_h^T`, the
///   blocks U_h orthonormal and mutually orthogonal, the residual weight `1 - alpha`, no
///   query, value or output bias (a key bias cancels in the softmax); or, for the single-head
///   form, any PSD metric `P P^T` with the value map `alpha I`;
/// - feed-forward: `act(Y W1 + b1) W2 + b2` with act the identity or ReLU (the prox of the
///   non-negativity indicator), `W1 = (1 - alpha) I - alpha S`, S symmetric with eigenvalues
///   in [lo, hi] (default [-0.95, 0.95]), `b1 = alpha b`, `W2 = I`, `b2 = 0`, no residual.
///
/// Each distance is 0 exactly on the part of that set it describes (the multi-head form or the
/// single-head form, as its notes say), is scale-free where it is a ratio, and is defined
/// where it is declared. Layer norms are not part of any energy here (MATH.md 1.3):
/// the nearest layer of an encoder layer drops them, and the output gap measures what that
/// costs.
///
/// Conventions: tokens are rows; the scores of head h are the products of the rows of
/// `Y W_Q^h` and `Y W_K^h` scaled by s, the attention's effective scale; `W_Q^h` is the h-th
/// block of columns of W_Q as the reference splits it (reference/attention.hpp).

#include "../energy/feedforward.hpp"
#include "../energy/multi_head.hpp"
#include "../energy/spectral_clamp.hpp"
#include "../reference/attention.hpp"
#include "../reference/encoder.hpp"
#include "../reference/feedforward.hpp"
#include "../stack/stack.hpp"
#include "../step/feedforward.hpp"
#include "../step/mm_attention.hpp"
#include "../step/multi_head.hpp"

#include <Eigen/Eigenvalues>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace unfold::check {

/// \brief How far one attention head is from an energy-descent head (MATH.md 1.4).
///
/// With `M_h = s W_Q^h W_K^h^T` (d x d, the bilinear form of the head's scores, scale
/// included), its symmetric part `Sym_h = (M_h + M_h^T) / 2 = V diag(lambda) V^T` and the
/// value map `V_h = W_V^h W_O^h` (d x d).
template <Real Scalar>
struct HeadDistance {
  /// ||M_h - M_h^T||_F / (2 ||M_h||_F), in [0, 1]: 0 iff the scores are a symmetric bilinear
  /// form (0 for M_h = 0).
  Scalar asymmetry = 0;

  /// max(0, -lambda_min(Sym_h)) / max_i |lambda_i|, in [0, 1]: 0 iff Sym_h is positive
  /// semi-definite (0 for Sym_h = 0).
  Scalar psd_violation = 0;

  /// U_h, d x r_h: the orthonormal eigenvectors of Sym_h whose eigenvalues exceed
  /// 1e3 eps max_i |lambda_i|, largest first. `U_h U_h^T` is the projection onto the range of
  /// the positive semi-definite part of Sym_h; a metric must be PSD, so the directions where
  /// the scores repel cannot belong to any head's block. r_h <= the head width w, since
  /// `x^T M_h x` vanishes on the kernel of `W_Q^h^T`, of dimension at least d - w.
  Matrix<Scalar> basis;

  /// The positive eigenvalues kept in `basis`, in the same order.
  Vector<Scalar> eigenvalues;

  /// ||Sym_h^+ - U_h U_h^T||_F / ||Sym_h^+||_F with `Sym_h^+ = U_h diag(eigenvalues) U_h^T`:
  /// how far the head's PSD metric is from the unit projection that a multi-head energy block
  /// has (its temperature and the spread of its eigenvalues); 0 when r_h = 0. Multi-head form
  /// only: a single-head step takes any PSD metric.
  Scalar projection_distance = 0;

  /// c_h = max(0, <V_h, U_h U_h^T>_F / r_h), the best scalar c >= 0 in ||V_h - c U_h U_h^T||_F.
  Scalar value_scale = 0;

  /// ||V_h - c_h U_h U_h^T||_F / ||V_h||_F: 0 iff the value map is a non-negative multiple of
  /// the head's projection (0 for V_h = 0; 1 when r_h = 0 and V_h != 0). Multi-head form; the
  /// single-head form compares W_V W_O with c I (AttentionDistance::full).
  Scalar value_distance = 0;

  /// |s| ||b_Q^h W_K^h^T||_2: the score term `b_Q^h W_K^h^T y_j` that depends on the key and
  /// so survives the softmax (a key bias shifts a whole row and cancels). 0 without b_Q.
  Scalar query_bias = 0;
};

/// \brief A fit of the value maps to `c` times a target, and the step size it implies.
///
/// An attention block with residual weight r and value maps `c T_h` is `r Y + c sum_h A_h Y
/// T_h`; the MM step is `(1 - alpha) Y + alpha sum_h A_h Y T_h`. The two agree when
/// `(1 - alpha) / alpha = r / c` and the gain `r + c` is 1.
template <Real Scalar>
struct ValueFit {
  /// c = max(0, sum_h <V_h, T_h>_F / sum_h ||T_h||_F^2), one scalar for all heads.
  Scalar scale = 0;

  /// sqrt(sum_h ||V_h - c T_h||_F^2 / sum_h ||V_h||_F^2) (0 when every V_h = 0).
  Scalar distance = 0;

  /// alpha = c / (r + c), clipped to [sqrt(eps), 1] (the MM steps descend for alpha <= 1);
  /// 1 when r + c <= 0 < c; sqrt(eps) when c = 0, where the nearest step barely moves.
  Scalar step_size = 1;

  /// |r + c - 1|: the gain the block applies on top of an MM step, which the step fixes at 1.
  Scalar gain_error = 0;
};

/// \brief How far a self-attention block is from a (multi-head) MM attention step.
template <Real Scalar>
struct AttentionDistance {
  /// One entry per head, in head order.
  std::vector<HeadDistance<Scalar>> heads;

  /// max over h != g of ||U_h^T U_g||_2, the cosine of the smallest principal angle between
  /// two heads' blocks, in [0, 1]: 0 iff the blocks are mutually orthogonal (0 for one head,
  /// and heads with r_h = 0 are skipped).
  Scalar overlap = 0;

  /// The value maps V_h fitted to c U_h U_h^T (the multi-head form of MATH.md 1.4).
  ValueFit<Scalar> blocks;

  /// The whole value map `W_V W_O = sum_h V_h` fitted to c I (the single-head form of
  /// MATH.md 1.1, whose step moves every direction of the tokens).
  ValueFit<Scalar> full;

  /// P, d x r: `P P^T` is the PSD part of the symmetric part of `sum_h M_h`, from its
  /// eigenvalues above 1e3 eps times the largest |eigenvalue|. The metric factor of the
  /// single-head form; r = 0 when that part vanishes.
  Matrix<Scalar> single_head_factor;

  /// The residual weight r of the block (reference residual_weight plus any outer residual).
  Scalar residual_weight = 0;

  /// ||b_V W_O + b_O||_2: the constant row the block adds to every token (attention rows sum
  /// to 1, so a value bias passes through unchanged). 0 without biases.
  Scalar output_offset = 0;
};

/// \brief The target set of a feed-forward block: the step size alpha and the eigenvalue range
/// [lo, hi] allowed for S.
template <Real Scalar>
struct FeedForwardTarget {
  /// alpha > 0; the linear map of the step is (1 - alpha) I - alpha S.
  Scalar step_size = 1;

  /// The range of the eigenvalues of S, lo <= hi (MATH.md 2: [-0.95, 0.95] makes alpha = 1
  /// safe and the energy strongly convex).
  Scalar lo = Scalar(-0.95);
  Scalar hi = Scalar(0.95);

  /// The spectrum allowed for the linear map: [(1 - alpha) - alpha hi, (1 - alpha) - alpha lo].
  [[nodiscard]] Scalar map_lo() const { return (Scalar(1) - step_size) - step_size * hi; }
  [[nodiscard]] Scalar map_hi() const { return (Scalar(1) - step_size) - step_size * lo; }

  /// Throws std::invalid_argument naming `who` and the field unless alpha is finite and > 0
  /// and lo <= hi are finite.
  void validate(std::string_view who) const
  {
    unfold::detail::require_positive(who, "step_size", step_size);
    if (!std::isfinite(lo) || !std::isfinite(hi) || !(lo <= hi)) {
      std::ostringstream out;
      out << "lo = " << lo << ", hi = " << hi << ", expected finite lo <= hi";
      unfold::detail::fail(who, out.str());
    }
  }
};

/// \brief How far a feed-forward block `act(Y W1 + b1) W2 + b2 + r Y` is from one symmetric
/// clamped feed-forward step, and that nearest step.
///
/// The numbers are read off the block's affine map on the region where every hidden unit is
/// active (there ReLU, and nearly GELU, is the identity): `Y T + 1 c` with `T = W1 W2 + r I`
/// (d x d) and `c = b1 W2 + b2`. The step is `Y N + alpha 1 b` there, so the block matches the
/// step on that region iff T lies in the set of symmetric matrices with spectrum in
/// [map_lo, map_hi]. The nearest point of that set in Frobenius norm is
/// `N = clamp(sym(T))`: the symmetric and antisymmetric matrices are orthogonal, so symmetrising
/// is the projection onto the first, and clamping the eigenvalues is the projection of a
/// symmetric matrix onto those with the allowed spectrum.
///
/// Off that region ReLU must act on the step's output: with act = ReLU the block also needs
/// `W2 = J`, `b2 = 0` and `r = 0` (J the f x d identity, truncated or padded with zeros, which
/// commutes with an entrywise ReLU). With act = identity the block is affine everywhere, and
/// W2, b2 and r are absorbed into T and c: only `symmetric_distance` decides. GELU is not the
/// prox of any convex function (it is not monotone), so a GELU block is never compatible; its
/// nearest step uses ReLU.
template <Real Scalar>
struct FeedForwardDistance {
  /// T = W1 W2 + r I, d x d.
  Matrix<Scalar> linear_map;

  /// c = b1 W2 + b2, 1 x d.
  RowVector<Scalar> offset;

  /// ||T - N||_F / ||T||_F: 0 iff T is symmetric with spectrum in [map_lo, map_hi]. For T = 0
  /// it is 0 when 0 lies in that range and 1 otherwise.
  Scalar symmetric_distance = 0;

  /// ||T - T^T||_F / (2 ||T||_F), the antisymmetric share of T (0 for T = 0).
  Scalar asymmetry = 0;

  /// ||W2 - J||_F / sqrt(d): 0 iff W2 = J.
  Scalar output_map_distance = 0;

  /// ||b2||_2 (0 without b2).
  Scalar output_bias = 0;

  /// r, the residual weight of the block (its own plus any outer residual).
  Scalar residual_weight = 0;

  /// act is the identity or ReLU, a prox map.
  bool activation_is_prox = true;

  /// The nearest step applies ReLU (act is ReLU or GELU).
  bool relu = true;

  /// N = clamp(sym(T)) to [map_lo, map_hi], symmetric d x d.
  Matrix<Scalar> nearest_map;

  /// S = ((1 - alpha) I - N) / alpha, symmetric with eigenvalues in [lo, hi].
  Matrix<Scalar> S;

  /// b = c / alpha, 1 x d (b1 / alpha when W2 = J and there is no b2).
  RowVector<Scalar> b;

  /// The target the distances refer to.
  FeedForwardTarget<Scalar> target;

  /// Whether the block is exactly compatible to relative tolerance `tol` on the numbers that
  /// decide for its activation (see the struct's notes).
  [[nodiscard]] bool compatible(Scalar tol) const
  {
    if (!activation_is_prox || symmetric_distance > tol)
      return false;
    if (!relu)
      return true;
    return output_map_distance <= tol && output_bias <= tol && std::abs(residual_weight) <= tol;
  }
};

/// Which attention step the nearest layer uses.
enum class AttentionForm {
  automatic,    ///< single_head for a one-head block, multi_head otherwise
  single_head,  ///< MMAttentionStep on AttentionEnergy(single_head_factor), value map alpha I
  multi_head,   ///< MultiHeadMMStep on orthonormal_heads of the heads' bases U_h
};

/// \brief Options of the nearest layer: the attention form and the feed-forward target.
template <Real Scalar>
struct NearestOptions {
  AttentionForm form = AttentionForm::automatic;

  /// The attention step size alpha; unset = the fitted one (`blocks.step_size` or
  /// `full.step_size`, by form). MATH.md proves descent for alpha in (0, 1].
  std::optional<Scalar> attention_step_size;

  FeedForwardTarget<Scalar> feed_forward;
};

/// \brief The nearest energy-descent layer: an MM attention step (one head or orthonormal
/// blocks) followed by a feed-forward step, as a `Layer` of this library.
///
/// The two possible layer types are held in a variant; `apply` and `run` dispatch on it, and
/// `visit` hands the layer itself to a callable.
template <Real Scalar_>
class NearestLayer {
 public:
  using Scalar = Scalar_;
  using SingleHeadLayer = Layer<MMAttentionStep<Scalar>, FeedForwardStep<Scalar>>;
  using MultiHeadLayer = Layer<MultiHeadMMStep<Scalar>, FeedForwardStep<Scalar>>;

  /// In: a single-head layer.
  explicit NearestLayer(SingleHeadLayer layer) : layer_(std::move(layer)) {}

  /// In: a multi-head layer.
  explicit NearestLayer(MultiHeadLayer layer) : layer_(std::move(layer)) {}

  /// True when the attention step is the multi-head MM step.
  [[nodiscard]] bool multi_head() const { return layer_.index() == 1; }

  /// The token width d.
  [[nodiscard]] Eigen::Index dim() const
  {
    return visit([](const auto& l) { return l.dim(); });
  }

  /// The attention step size alpha.
  [[nodiscard]] Scalar attention_step_size() const
  {
    return visit([](const auto& l) { return l.template step<0>().params().step_size; });
  }

  /// The widths of the attention's metric factors: r for one head, d_h per block otherwise.
  [[nodiscard]] std::vector<Eigen::Index> head_widths() const
  {
    std::vector<Eigen::Index> widths;
    if (const auto* single = std::get_if<SingleHeadLayer>(&layer_)) {
      widths.push_back(single->template step<0>().energy().rank());
      return widths;
    }
    const auto& energy = std::get<MultiHeadLayer>(layer_).template step<0>().energy();
    for (std::size_t h = 0; h < energy.heads(); ++h)
      widths.push_back(energy.head(h).rank());
    return widths;
  }

  /// The feed-forward step.
  [[nodiscard]] const FeedForwardStep<Scalar>& feed_forward() const
  {
    return visit([](const auto& l) -> const FeedForwardStep<Scalar>& {
      return l.template step<1>();
    });
  }

  /// Calls f(layer) with the layer of whichever type it holds.
  template <class F>
  decltype(auto) visit(F&& f) const
  {
    return std::visit(std::forward<F>(f), layer_);
  }

  /// One application of the layer to Y (n x d): the attention step, then the feed-forward
  /// step. Out: n x d.
  [[nodiscard]] Matrix<Scalar> apply(const ConstMatrixRef<Scalar>& Y) const
  {
    return visit([&](const auto& l) {
      unfold::detail::require_tokens("check::NearestLayer::apply", Y, l.dim());
      Matrix<Scalar> mid(Y.rows(), Y.cols());
      Matrix<Scalar> out(Y.rows(), Y.cols());
      l.template step<0>().apply(Y, mid);
      l.template step<1>().apply(mid, out);
      return out;
    });
  }

  /// The weight-tied stack of `depth` applications run on Y (n x d), with its energy trace.
  [[nodiscard]] StackResult<Scalar> run(const ConstMatrixRef<Scalar>& Y, std::size_t depth,
                                        const RunOptions<Scalar>& options = {}) const
  {
    return visit([&](const auto& l) { return unfold::run(tied(l, depth), Y, options); });
  }

 private:
  std::variant<SingleHeadLayer, MultiHeadLayer> layer_;
};

/// \brief A reference layer's distances, its nearest energy-descent layer, and the output gap
/// between the two on given tokens.
template <Real Scalar>
struct LayerDistance {
  AttentionDistance<Scalar> attention;
  FeedForwardDistance<Scalar> feed_forward;

  /// The nearest energy-descent layer.
  NearestLayer<Scalar> nearest;

  /// ||layer(Y) - nearest(Y)||_F / ||layer(Y)||_F on the given tokens (the absolute norm when
  /// layer(Y) = 0).
  Scalar output_gap = 0;

  /// max over the nearest layer's metric factors P_h of
  /// max_j ||y_j P_h|| / min_j ||y_j P_h|| - 1 at the given tokens: 0 iff every factor sees
  /// equal metric norms, where the MM step and plain softmax attention on the same metrics
  /// coincide (MATH.md 1.2); +infinity when some ||y_j P_h|| is 0.
  Scalar norm_spread = 0;

  /// True when the reference layer has layer norms, which the nearest layer drops.
  bool layer_norms_dropped = false;
};

}  // namespace unfold::check

namespace unfold::detail::distance {

/// The eigenvalue cut below which a direction counts as absent: 1e3 eps times the largest
/// |eigenvalue|, the rank tolerance of orthonormal_heads.
template <Real Scalar>
Scalar rank_cut(Scalar top)
{
  return Scalar(1e3) * Eigen::NumTraits<Scalar>::epsilon() * top;
}

/// ||X - X^T||_F / (2 ||X||_F), 0 for X = 0.
template <Real Scalar>
Scalar asymmetry(const Matrix<Scalar>& X)
{
  const Scalar norm = X.norm();
  return norm > Scalar(0) ? (X - X.transpose()).norm() / (Scalar(2) * norm) : Scalar(0);
}

/// The PSD part of a symmetric matrix as eigenvectors and eigenvalues above the rank cut,
/// largest first, and the share of negative spectrum.
template <Real Scalar>
struct PositivePart {
  Matrix<Scalar> vectors;  ///< d x r
  Vector<Scalar> values;   ///< r, positive, descending
  Scalar psd_violation = 0;
};

template <Real Scalar>
PositivePart<Scalar> positive_part(const Matrix<Scalar>& sym)
{
  const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eigen(sym);
  const Vector<Scalar>& lambda = eigen.eigenvalues();  // ascending
  const Eigen::Index d = lambda.size();
  const Scalar top = std::max(std::abs(lambda(0)), std::abs(lambda(d - 1)));

  PositivePart<Scalar> part;
  part.psd_violation = top > Scalar(0) ? std::max(Scalar(0), -lambda(0)) / top : Scalar(0);
  Eigen::Index r = 0;
  while (r < d && top > Scalar(0) && lambda(d - 1 - r) > rank_cut(top))
    ++r;
  part.vectors.resize(d, r);
  part.values.resize(r);
  for (Eigen::Index i = 0; i < r; ++i) {
    part.vectors.col(i) = eigen.eigenvectors().col(d - 1 - i);
    part.values(i) = lambda(d - 1 - i);
  }
  return part;
}

/// The fit of the value maps V_h to c T_h for a block of residual weight r (see ValueFit).
template <Real Scalar>
check::ValueFit<Scalar> fit_values(const std::vector<Matrix<Scalar>>& values,
                                   const std::vector<Matrix<Scalar>>& targets, Scalar residual)
{
  Scalar inner = 0;
  Scalar target_norm2 = 0;
  Scalar value_norm2 = 0;
  for (std::size_t h = 0; h < values.size(); ++h) {
    inner += values[h].cwiseProduct(targets[h]).sum();
    target_norm2 += targets[h].squaredNorm();
    value_norm2 += values[h].squaredNorm();
  }

  check::ValueFit<Scalar> fit;
  fit.scale = target_norm2 > Scalar(0) ? std::max(Scalar(0), inner / target_norm2) : Scalar(0);
  Scalar rest2 = 0;
  for (std::size_t h = 0; h < values.size(); ++h)
    rest2 += (values[h] - fit.scale * targets[h]).squaredNorm();
  fit.distance = value_norm2 > Scalar(0) ? std::sqrt(rest2 / value_norm2) : Scalar(0);

  // (1 - alpha) / alpha = r / c, inside the range where the MM steps are proven to descend.
  const Scalar smallest = std::sqrt(Eigen::NumTraits<Scalar>::epsilon());
  const Scalar gain = residual + fit.scale;
  if (fit.scale <= Scalar(0))
    fit.step_size = smallest;
  else if (gain <= Scalar(0))
    fit.step_size = Scalar(1);
  else
    fit.step_size = std::clamp(fit.scale / gain, smallest, Scalar(1));
  fit.gain_error = std::abs(gain - Scalar(1));
  return fit;
}

/// Throws unless the parameters are a self-attention block mapping d to d.
template <Real Scalar>
void require_self_attention(std::string_view who, const reference::MultiHeadAttention<Scalar>& p)
{
  reference::detail::validate(who, p);
  const Eigen::Index d = p.W_Q.rows();
  unfold::detail::require_rows(who, "W_K", p.W_K, d, "rows of W_Q (d)");
  unfold::detail::require_rows(who, "W_V", p.W_V, d, "rows of W_Q (d)");
  unfold::detail::require_cols(who, "W_O", p.W_O, d, "rows of W_Q (d)");
}

/// Throws unless the feed-forward block maps d to d.
template <Real Scalar>
void require_square_block(std::string_view who, const reference::FeedForward<Scalar>& p)
{
  reference::detail::validate(who, p);
  unfold::detail::require_cols(who, "W2", p.W2, p.W1.rows(), "rows of W1 (d)");
}

/// max_j ||y_j P|| / min_j ||y_j P|| - 1.
template <Real Scalar>
Scalar norm_spread(const ConstMatrixRef<Scalar>& Y, const Matrix<Scalar>& P)
{
  const Vector<Scalar> norms = (Y * P).rowwise().norm();
  const Scalar lo = norms.minCoeff();
  if (!(lo > Scalar(0)))
    return std::numeric_limits<Scalar>::infinity();
  return norms.maxCoeff() / lo - Scalar(1);
}

}  // namespace unfold::detail::distance

namespace unfold::check {

/// \brief The distances of a self-attention block from an energy-descent attention step.
///
/// In: `attention`, a self-attention block (W_Q, W_K, W_V of d rows, W_O of d columns; see
/// reference::MultiHeadAttention), and `outer_residual`, a residual added around the block
/// (1 inside an encoder layer, whose `x + SA(x)` is a block with residual weight 1). Out: the
/// numbers of AttentionDistance, each defined there.
/// \throws std::invalid_argument naming the argument on inconsistent shapes, heads not
/// dividing the widths, or non-finite weights.
template <Real Scalar>
AttentionDistance<Scalar> attention_distance(const reference::MultiHeadAttention<Scalar>& attention,
                                             Scalar outer_residual = Scalar(0))
{
  constexpr std::string_view who = "check::attention_distance";
  detail::distance::require_self_attention(who, attention);
  reference::detail::require_finite_scalar(who, "outer_residual", outer_residual);

  const Eigen::Index d = attention.W_Q.rows();
  const Eigen::Index heads = attention.heads;
  const Eigen::Index key_width = attention.key_width() / heads;
  const Eigen::Index value_width = attention.value_width() / heads;
  const Scalar s = attention.effective_scale();

  AttentionDistance<Scalar> report;
  report.residual_weight = attention.residual_weight + outer_residual;

  std::vector<Matrix<Scalar>> values;
  std::vector<Matrix<Scalar>> projections;
  Matrix<Scalar> summed = Matrix<Scalar>::Zero(d, d);
  for (Eigen::Index h = 0; h < heads; ++h) {
    // M_h = s W_Q^h W_K^h^T and V_h = W_V^h W_O^h, both d x d.
    const auto W_Q = attention.W_Q.middleCols(h * key_width, key_width);
    const auto W_K = attention.W_K.middleCols(h * key_width, key_width);
    const Matrix<Scalar> M = s * (W_Q * W_K.transpose());
    const Matrix<Scalar> V = attention.W_V.middleCols(h * value_width, value_width) *
                             attention.W_O.middleRows(h * value_width, value_width);
    summed += M;

    // The symmetric part, its PSD part and the projection onto its range.
    HeadDistance<Scalar> head;
    head.asymmetry = detail::distance::asymmetry(M);
    const Matrix<Scalar> sym = Scalar(0.5) * (M + M.transpose());
    auto part = detail::distance::positive_part(sym);
    head.psd_violation = part.psd_violation;
    head.basis = std::move(part.vectors);
    head.eigenvalues = std::move(part.values);
    const Eigen::Index r = head.basis.cols();
    if (r > 0)
      head.projection_distance =
          (head.eigenvalues.array() - Scalar(1)).matrix().norm() / head.eigenvalues.norm();

    // c_h >= 0 minimising ||V_h - c U_h U_h^T||_F: <V_h, U_h U_h^T> / r_h = tr(U^T V U) / r_h.
    const Matrix<Scalar> projection = head.basis * head.basis.transpose();
    if (r > 0)
      head.value_scale = std::max(Scalar(0), (head.basis.transpose() * V * head.basis).trace() /
                                                 Scalar(r));
    const Scalar value_norm = V.norm();
    head.value_distance =
        value_norm > Scalar(0) ? (V - head.value_scale * projection).norm() / value_norm
                               : Scalar(0);

    if (attention.b_Q.size() != 0)
      head.query_bias =
          std::abs(s) * (attention.b_Q.middleCols(h * key_width, key_width) * W_K.transpose())
                            .norm();

    values.push_back(V);
    projections.push_back(projection);
    report.heads.push_back(std::move(head));
  }

  // Overlap: the largest singular value of U_h^T U_g over pairs of non-empty blocks.
  for (Eigen::Index h = 0; h < heads; ++h)
    for (Eigen::Index g = h + 1; g < heads; ++g) {
      const Matrix<Scalar>& U_h = report.heads[std::size_t(h)].basis;
      const Matrix<Scalar>& U_g = report.heads[std::size_t(g)].basis;
      if (U_h.cols() == 0 || U_g.cols() == 0)
        continue;
      const Eigen::JacobiSVD<Matrix<Scalar>> svd(U_h.transpose() * U_g);
      report.overlap = std::max(report.overlap, svd.singularValues()(0));
    }

  report.blocks = detail::distance::fit_values(values, projections, report.residual_weight);
  const Matrix<Scalar> whole = attention.W_V * attention.W_O;
  report.full = detail::distance::fit_values<Scalar>({whole}, {Matrix<Scalar>::Identity(d, d)},
                                                     report.residual_weight);

  // Single-head form: P with P P^T the PSD part of sym(sum_h M_h).
  const auto part = detail::distance::positive_part<Scalar>(
      Scalar(0.5) * (summed + summed.transpose()));
  report.single_head_factor = part.vectors * part.values.cwiseSqrt().asDiagonal();

  // The constant row b_V W_O + b_O.
  RowVector<Scalar> offset = RowVector<Scalar>::Zero(d);
  if (attention.b_V.size() != 0)
    offset += attention.b_V * attention.W_O;
  if (attention.b_O.size() != 0)
    offset += attention.b_O;
  report.output_offset = offset.norm();
  return report;
}

/// \brief The distance of a feed-forward block from one symmetric clamped feed-forward step,
/// and that nearest step's S and b.
///
/// In: `block` mapping d to d (W1 d x f, W2 f x d), `target` (alpha and the range of S),
/// `outer_residual` a residual added around the block (1 inside an encoder layer). Out: the
/// numbers of FeedForwardDistance, each defined there.
/// \throws std::invalid_argument naming the argument on inconsistent shapes, non-finite
/// weights or an invalid target.
template <Real Scalar>
FeedForwardDistance<Scalar> feedforward_distance(const reference::FeedForward<Scalar>& block,
                                                 const FeedForwardTarget<Scalar>& target = {},
                                                 Scalar outer_residual = Scalar(0))
{
  constexpr std::string_view who = "check::feedforward_distance";
  detail::distance::require_square_block(who, block);
  target.validate(who);
  reference::detail::require_finite_scalar(who, "outer_residual", outer_residual);

  const Eigen::Index d = block.W1.rows();
  const Eigen::Index f = block.W1.cols();
  const Scalar alpha = target.step_size;
  const Matrix<Scalar> I = Matrix<Scalar>::Identity(d, d);

  FeedForwardDistance<Scalar> report;
  report.target = target;
  report.residual_weight = block.residual_weight + outer_residual;
  report.activation_is_prox = block.activation == reference::Activation::identity ||
                              block.activation == reference::Activation::relu;
  report.relu = block.activation != reference::Activation::identity;

  // The affine map on the all-active region: T = W1 W2 + r I (d x d), c = b1 W2 + b2 (1 x d).
  report.linear_map = block.W1 * block.W2 + report.residual_weight * I;
  report.offset = RowVector<Scalar>::Zero(d);
  if (block.b1.size() != 0)
    report.offset += block.b1 * block.W2;
  if (block.b2.size() != 0)
    report.offset += block.b2;

  // Nearest point of {N symmetric, spectrum in [map_lo, map_hi]}: symmetrise, then clamp.
  const Matrix<Scalar>& T = report.linear_map;
  report.nearest_map =
      spectral_clamp(Matrix<Scalar>(Scalar(0.5) * (T + T.transpose())), target.map_lo(),
                     target.map_hi());
  const Scalar norm = T.norm();
  if (norm > Scalar(0))
    report.symmetric_distance = (T - report.nearest_map).norm() / norm;
  else
    report.symmetric_distance = report.nearest_map.norm() > Scalar(0) ? Scalar(1) : Scalar(0);
  report.asymmetry = detail::distance::asymmetry(T);

  // The ReLU structure: W2 against J (f x d, ones on the diagonal), b2, and the residual.
  report.output_map_distance =
      (block.W2 - Matrix<Scalar>::Identity(f, d)).norm() / std::sqrt(Scalar(d));
  report.output_bias = block.b2.size() != 0 ? block.b2.norm() : Scalar(0);

  // The step's parameters: N = (1 - alpha) I - alpha S and c = alpha b.
  report.S = ((Scalar(1) - alpha) * I - report.nearest_map) / alpha;
  report.b = report.offset / alpha;
  return report;
}

/// \brief The nearest energy-descent layer of an attention block followed by a feed-forward
/// block, from their distance reports.
///
/// Attention, by `form`: single_head is `MMAttentionStep(AttentionEnergy(single_head_factor),
/// full.step_size)`; multi_head is `MultiHeadMMStep` on `orthonormal_heads` of the heads'
/// bases U_h (Gram-Schmidt in head order, so a later head keeps only its directions outside
/// the earlier ones; blocks left empty are dropped) with `blocks.step_size`. Feed-forward:
/// `FeedForwardStep(FeedForwardEnergy(S, b), {alpha, relu})`. A set `attention_step_size`
/// replaces the fitted attention alpha.
/// \throws std::invalid_argument when the form needs a positive direction the scores lack
/// (no head, or the summed metric, has a positive eigenvalue), or when attention_step_size is
/// not finite and > 0.
template <Real Scalar>
NearestLayer<Scalar> nearest_layer(const AttentionDistance<Scalar>& attention,
                                   const FeedForwardDistance<Scalar>& feed_forward,
                                   AttentionForm form = AttentionForm::automatic,
                                   std::optional<Scalar> attention_step_size = std::nullopt)
{
  constexpr std::string_view who = "check::nearest_layer";
  if (attention.heads.empty())
    unfold::detail::fail(who, "attention.heads is empty, expected a distance report");
  if (form == AttentionForm::automatic)
    form = attention.heads.size() == 1 ? AttentionForm::single_head : AttentionForm::multi_head;
  if (attention_step_size)
    unfold::detail::require_positive(who, "attention_step_size", *attention_step_size);

  const FeedForwardStep<Scalar> ffn(
      FeedForwardEnergy<Scalar>(feed_forward.S, feed_forward.b),
      FeedForwardParams<Scalar>{feed_forward.target.step_size, feed_forward.relu});

  if (form == AttentionForm::single_head) {
    if (attention.single_head_factor.cols() == 0)
      unfold::detail::fail(who, "the symmetric part of the summed score matrix has no positive "
                                "eigenvalue, so there is no single-head metric");
    const MMAttentionStep<Scalar> step(
        AttentionEnergy<Scalar>(attention.single_head_factor),
        StepParams<Scalar>{attention_step_size.value_or(attention.full.step_size)});
    return NearestLayer<Scalar>(typename NearestLayer<Scalar>::SingleHeadLayer(step, ffn));
  }

  std::vector<Matrix<Scalar>> bases;
  for (const auto& head : attention.heads)
    if (head.basis.cols() > 0)
      bases.push_back(head.basis);
  if (bases.empty())
    unfold::detail::fail(who, "no head's symmetric score part has a positive eigenvalue, so "
                              "there is no block for a multi-head step");
  std::vector<Matrix<Scalar>> blocks;
  for (auto& block : orthonormal_heads<Scalar>(bases).blocks)
    if (block.cols() > 0)
      blocks.push_back(std::move(block));
  const MultiHeadMMStep<Scalar> step(
      MultiHeadAttentionEnergy<Scalar>(blocks),
      StepParams<Scalar>{attention_step_size.value_or(attention.blocks.step_size)});
  return NearestLayer<Scalar>(typename NearestLayer<Scalar>::MultiHeadLayer(step, ffn));
}

}  // namespace unfold::check

namespace unfold::detail::distance {

/// The distances, the nearest layer and the gap against a reference output already computed.
template <Real Scalar>
check::LayerDistance<Scalar> assemble(const reference::MultiHeadAttention<Scalar>& attention,
                                      const reference::FeedForward<Scalar>& feed_forward,
                                      Scalar outer_residual, const ConstMatrixRef<Scalar>& Y,
                                      const Matrix<Scalar>& reference_output,
                                      const check::NearestOptions<Scalar>& options)
{
  auto att = check::attention_distance<Scalar>(attention, outer_residual);
  auto ffn = check::feedforward_distance<Scalar>(feed_forward, options.feed_forward,
                                                 outer_residual);
  auto nearest =
      check::nearest_layer<Scalar>(att, ffn, options.form, options.attention_step_size);

  const Matrix<Scalar> unfolded = nearest.apply(Y);
  const Scalar scale = reference_output.norm();
  const Scalar gap = (reference_output - unfolded).norm();

  // The spread of the metric norms over the tokens, per metric factor of the nearest layer.
  Scalar spread = 0;
  nearest.visit([&](const auto& layer) {
    const auto& energy = layer.template step<0>().energy();
    if constexpr (requires { energy.heads(); }) {
      for (std::size_t h = 0; h < energy.heads(); ++h)
        spread = std::max(spread, norm_spread<Scalar>(Y, energy.head(h).factor()));
    } else {
      spread = norm_spread<Scalar>(Y, energy.factor());
    }
  });

  return check::LayerDistance<Scalar>{std::move(att), std::move(ffn), std::move(nearest),
                                      scale > Scalar(0) ? gap / scale : gap, spread, false};
}

}  // namespace unfold::detail::distance

namespace unfold::check {

/// \brief A layer of a self-attention block followed by a feed-forward block,
/// `feed_forward(self_attention(Y))` with each block's own residual weight (the form that
/// check::reference_attention and check::reference_feedforward build from unfolded steps):
/// its distances, its nearest energy-descent layer and the output gap on Y.
///
/// In: the two blocks (each d to d), `Y` (n x d, finite), the options. Out: see LayerDistance.
/// \throws std::invalid_argument naming the argument on inconsistent shapes or bad values.
template <Real Scalar>
LayerDistance<Scalar> layer_distance(const reference::MultiHeadAttention<Scalar>& attention,
                                     const reference::FeedForward<Scalar>& feed_forward,
                                     const ConstMatrixRef<Scalar>& Y,
                                     const NearestOptions<Scalar>& options = {})
{
  constexpr std::string_view who = "check::layer_distance";
  detail::distance::require_self_attention(who, attention);
  detail::distance::require_square_block(who, feed_forward);
  unfold::detail::require_rows(who, "feed_forward.W1", feed_forward.W1, attention.W_Q.rows(),
                               "rows of attention.W_Q (d)");
  unfold::detail::require_tokens(who, Y, attention.W_Q.rows());

  const Matrix<Scalar> reference_output = reference::feed_forward<Scalar>(
      reference::self_attention<Scalar>(Y, attention), feed_forward);
  return detail::distance::assemble<Scalar>(attention, feed_forward, Scalar(0), Y,
                                            reference_output, options);
}

/// \brief An encoder layer (reference::EncoderLayer, e.g. a PyTorch TransformerEncoderLayer):
/// its distances, its nearest energy-descent layer and the output gap on Y.
///
/// The blocks are measured with their residual connections (`x + SA(x)`, `x + FF(x)`: outer
/// residual 1); the layer norms, pre- or post-, are dropped from the nearest layer
/// (`layer_norms_dropped`), and the gap compares `encoder_layer(Y)` with the nearest layer
/// applied to Y, so it includes what dropping them costs.
/// \throws std::invalid_argument naming the argument on inconsistent shapes or bad values.
template <Real Scalar>
LayerDistance<Scalar> layer_distance(const reference::EncoderLayer<Scalar>& layer,
                                     const ConstMatrixRef<Scalar>& Y,
                                     const NearestOptions<Scalar>& options = {})
{
  constexpr std::string_view who = "check::layer_distance";
  reference::detail::validate(who, "layer", layer);
  detail::distance::require_self_attention(who, layer.attention);
  unfold::detail::require_tokens(who, Y, layer.attention.W_Q.rows());

  const Matrix<Scalar> reference_output = reference::encoder_layer<Scalar>(Y, layer);
  LayerDistance<Scalar> report = detail::distance::assemble<Scalar>(
      layer.attention, layer.feed_forward, Scalar(1), Y, reference_output, options);
  report.layer_norms_dropped = true;
  return report;
}

}  // namespace unfold::check
