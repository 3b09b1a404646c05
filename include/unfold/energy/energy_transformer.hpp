#pragma once

/// \file
/// The Energy Transformer (Hoover et al. 2023; MATH.md section 6): an attention energy and a
/// Hopfield memory energy of the layer-normalised tokens, and the layer norm as the gradient of
/// a convex Lagrangian.

#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unfold {

/// Layer norm with a scalar gain gamma > 0 and a bias row delta, per token x (a row, d wide):
///
///     g(x) = gamma sqrt(d) (x - mean(x)) / rho(x) + delta,  rho(x) = sqrt(||x - mean||^2 + d eps),
///
/// which is the usual layer norm gamma (x - mean) / sqrt(var + eps) + delta (biased variance,
/// eps inside the root, as in PyTorch). It is the gradient of the Lagrangian
///
///     L(x) = gamma sqrt(d) rho(x) + delta . x  =  gamma d sqrt(var(x) + eps) + delta . x,
///
/// whose Hessian, the Jacobian of the layer norm,
///
///     dg/dx = (gamma sqrt(d) / rho) (I - 1 1^T / d - c c^T / rho^2),   c = x - mean(x),
///
/// is symmetric and positive semi-definite (its eigenvalues are 0 on the all-ones direction,
/// gamma sqrt(d) d eps / rho^3 along c and gamma sqrt(d) / rho elsewhere), so L is convex.
/// That is what makes the Energy Transformer step descend (step/energy_transformer.hpp).
///
/// The class models Energy with `value` = sum over tokens of L and `gradient` = the layer norm,
/// so that the gradient checker can confirm the pair. The gain is one scalar: a per-feature
/// gain would make dg/dx non-symmetric, and g would be the gradient of no function.
///
/// d = 1 is accepted and degenerate: the centred token is 0, g = delta for every x, L is
/// linear and dg/dx = 0.
template <Real Scalar_>
class LayerNormLagrangian {
public:
  using Scalar = Scalar_;

  /// \param d token width, >= 1. \param gain gamma, finite and > 0.
  /// \param bias delta, 1 x d, or empty for zeros. \param eps > 0, inside the square root.
  explicit LayerNormLagrangian(Eigen::Index d, Scalar gain = Scalar(1),
                               RowVector<Scalar> bias = {}, Scalar eps = Scalar(1e-5))
      : d_(d), gain_(gain), bias_(std::move(bias)), eps_(eps)
  {
    constexpr std::string_view who = "LayerNormLagrangian";
    if (d < 1)
      detail::fail(who, "d = " + std::to_string(d) + ", expected d >= 1");
    detail::require_positive(who, "gain", gain_);
    detail::require_positive(who, "eps", eps_);
    if (bias_.size() == 0)
      bias_ = RowVector<Scalar>::Zero(d);
    detail::require_shape(who, "bias", bias_, 1, d);
    detail::require_finite(who, "bias", bias_);
  }

  static constexpr std::string_view name() { return "layer_norm_lagrangian"; }

  Eigen::Index dim() const { return d_; }
  Scalar gain() const { return gain_; }
  const RowVector<Scalar>& bias() const { return bias_; }
  Scalar eps() const { return eps_; }

  /// sum over the tokens of L(x), at Y (n x d).
  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("LayerNormLagrangian::value", Y, d_);
    Scalar total = (Y * bias_.transpose()).sum();
    for (Eigen::Index i = 0; i < Y.rows(); ++i)
      total += gain_ * std::sqrt(Scalar(d_)) * radius(centred(Y.row(i)));
    return total;
  }

  /// Writes the layer norm g(Y) into G (n x d): the gradient of `value`.
  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    constexpr std::string_view who = "LayerNormLagrangian::gradient";
    detail::require_tokens(who, Y, d_);
    detail::require_shape(who, "G", G, Y.rows(), Y.cols());
    normalise_into(Y, G);
  }

  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    constexpr std::string_view who = "LayerNormLagrangian::value_and_gradient";
    detail::require_tokens(who, Y, d_);
    detail::require_shape(who, "G", G, Y.rows(), Y.cols());
    normalise_into(Y, G);
    return value(Y);
  }

  /// The layer norm g(Y), n x d.
  Matrix<Scalar> normalise(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("LayerNormLagrangian::normalise", Y, d_);
    Matrix<Scalar> G(Y.rows(), Y.cols());
    normalise_into(Y, G);
    return G;
  }

  /// Writes (dg/dx) v for every token into `out` (n x d): row i is the Jacobian of the layer
  /// norm at row i of Y applied to row i of V. The Jacobian is symmetric, so this is also
  /// the chain rule dE/dx = (dg/dx)^T dE/dg. `out` may be `V` itself.
  void apply_jacobian(const ConstMatrixRef<Scalar>& Y, const ConstMatrixRef<Scalar>& V,
                      MatrixRef<Scalar> out) const
  {
    constexpr std::string_view who = "LayerNormLagrangian::apply_jacobian";
    detail::require_tokens(who, Y, d_);
    detail::require_shape(who, "V", V, Y.rows(), Y.cols());
    detail::require_shape(who, "out", out, Y.rows(), Y.cols());
    for (Eigen::Index i = 0; i < Y.rows(); ++i) {
      // (gamma sqrt(d) / rho) (v - mean(v) 1 - u (u . v)), u = c / rho.
      const RowVector<Scalar> c = centred(Y.row(i));
      const Scalar rho = radius(c);
      const RowVector<Scalar> u = c / rho;
      const RowVector<Scalar> v = V.row(i);
      const Scalar scale = gain_ * std::sqrt(Scalar(d_)) / rho;
      out.row(i) = scale * ((v.array() - v.mean()).matrix() - u.dot(v) * u);
    }
  }

private:
  // x - mean(x), the mean taken first (two passes), so a large mean keeps the spread's digits.
  static RowVector<Scalar> centred(const RowVector<Scalar>& x)
  {
    return (x.array() - x.mean()).matrix();
  }

  // rho = sqrt(||c||^2 + d eps), as a hypotenuse, so that huge tokens do not overflow.
  Scalar radius(const RowVector<Scalar>& c) const
  {
    return std::hypot(c.stableNorm(), std::sqrt(Scalar(d_) * eps_));
  }

  void normalise_into(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    const Scalar scale = gain_ * std::sqrt(Scalar(d_));
    for (Eigen::Index i = 0; i < Y.rows(); ++i) {
      const RowVector<Scalar> c = centred(Y.row(i));
      G.row(i) = (scale / radius(c)) * c + bias_;
    }
  }

  Eigen::Index d_;
  Scalar gain_;
  RowVector<Scalar> bias_;
  Scalar eps_;
};

/// Which parts of the Energy Transformer energy an EnergyTransformerEnergy holds.
enum class EnergyTransformerTerms {
  both,       ///< E_att + E_hop
  attention,  ///< E_att alone
  memory      ///< E_hop alone
};

/// Options of the Energy Transformer energy.
struct EnergyTransformerOptions {
  /// Whether the key of token C itself (B = C) enters the log-sum-exp of query C. MATH.md
  /// (after Hoover et al.) excludes it; with it excluded, a single token has no key to attend
  /// to and its attention term is dropped (it contributes 0, not -log 0 = +infinity).
  bool include_self = false;

  /// Which terms the energy holds; `both` is the Energy Transformer.
  EnergyTransformerTerms terms = EnergyTransformerTerms::both;
};

/// The Energy Transformer energy of tokens x (n x d, one per row), through g = LayerNorm(x):
///
///     E_att = -(1/beta) sum_h sum_C log sum_{B != C} exp(beta K^h_B . Q^h_C),
///             K^h = g W_K^h,  Q^h = g W_Q^h   (W_K^h, W_Q^h: d x k_h; rows B, C of n x k_h),
///     E_hop = -0.5 sum_mu sum_B ReLU(xi_mu . g_B)^2          (memories xi: M x d),
///     E     = E_att + E_hop.
///
/// With respect to g,
///
///     dE_att/dg = -sum_h (P^h Q^h W_K^h^T + P^h^T K^h W_Q^h^T),
///     dE_hop/dg = -ReLU(g xi^T) xi,
///
/// where column C of P^h (n x n) is the softmax over the keys B of beta K^h_B . Q^h_C. The
/// Energy concept's `gradient` is dE/dx, the chain rule through the symmetric layer-norm
/// Jacobian: dE/dx = (dg/dx) dE/dg per token. The Energy Transformer step moves x along
/// -dE/dg instead (`value_and_activation_gradient`; step/energy_transformer.hpp).
///
/// E is bounded below, because g stays in a ball of radius gamma sqrt(d) around delta.
/// Log-sum-exps subtract their maximum, so far-apart or huge tokens give no NaN.
///
/// \tparam Scalar_ float or double.
template <Real Scalar_>
class EnergyTransformerEnergy {
public:
  using Scalar = Scalar_;

  /// \param norm the layer norm (its width is d).
  /// \param keys W_K^h, one d x k_h matrix per head (may be empty: no attention term).
  /// \param queries W_Q^h, as many as keys, each of its key's shape.
  /// \param memories xi, M x d (M may be 0: no memory term).
  /// \param beta inverse temperature of the attention, finite and > 0.
  EnergyTransformerEnergy(LayerNormLagrangian<Scalar> norm, std::vector<Matrix<Scalar>> keys,
                          std::vector<Matrix<Scalar>> queries, Matrix<Scalar> memories,
                          Scalar beta, EnergyTransformerOptions options = {})
      : norm_(std::move(norm)), keys_(std::move(keys)), queries_(std::move(queries)),
        memories_(std::move(memories)), beta_(beta), options_(options)
  {
    constexpr std::string_view who = "EnergyTransformerEnergy";
    const Eigen::Index d = norm_.dim();
    detail::require_positive(who, "beta", beta_);
    if (keys_.size() != queries_.size())
      detail::fail(who, "keys has " + std::to_string(keys_.size()) + " heads, queries has " +
                            std::to_string(queries_.size()) + ", expected the same number");
    for (std::size_t h = 0; h < keys_.size(); ++h) {
      const std::string key = "keys[" + std::to_string(h) + "]";
      const std::string query = "queries[" + std::to_string(h) + "]";
      detail::require_nonempty(who, key, keys_[h]);
      detail::require_rows(who, key, keys_[h], d, "d");
      detail::require_finite(who, key, keys_[h]);
      detail::require_shape(who, query, queries_[h], keys_[h].rows(), keys_[h].cols());
      detail::require_finite(who, query, queries_[h]);
    }
    if (memories_.rows() == 0 && memories_.cols() == 0)
      memories_.resize(0, d);
    detail::require_cols(who, "memories", memories_, d, "d");
    detail::require_finite(who, "memories", memories_);
  }

  static constexpr std::string_view name() { return "energy_transformer"; }

  Eigen::Index dim() const { return norm_.dim(); }
  std::size_t heads() const { return keys_.size(); }
  const LayerNormLagrangian<Scalar>& layer_norm() const { return norm_; }
  const std::vector<Matrix<Scalar>>& keys() const { return keys_; }
  const std::vector<Matrix<Scalar>>& queries() const { return queries_; }
  const Matrix<Scalar>& memories() const { return memories_; }
  Scalar beta() const { return beta_; }
  const EnergyTransformerOptions& options() const { return options_; }

  /// The same weights holding other terms (for alternating sub-steps and per-term traces).
  EnergyTransformerEnergy with_terms(EnergyTransformerTerms terms) const
  {
    EnergyTransformerEnergy copy = *this;
    copy.options_.terms = terms;
    return copy;
  }

  /// The energy at tokens Y (n x d).
  Scalar value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("EnergyTransformerEnergy::value", Y, dim());
    return evaluate(norm_.normalise(Y), options_.terms, nullptr);
  }

  /// E_att at Y, whatever terms this energy holds.
  Scalar attention_value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("EnergyTransformerEnergy::attention_value", Y, dim());
    return evaluate(norm_.normalise(Y), EnergyTransformerTerms::attention, nullptr);
  }

  /// E_hop at Y, whatever terms this energy holds.
  Scalar memory_value(const ConstMatrixRef<Scalar>& Y) const
  {
    detail::require_tokens("EnergyTransformerEnergy::memory_value", Y, dim());
    return evaluate(norm_.normalise(Y), EnergyTransformerTerms::memory, nullptr);
  }

  /// Writes dE/dx at Y into G (n x d).
  void gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    value_and_gradient(Y, G);
  }

  /// The energy at Y; writes dE/dx into G (n x d): dE/dg, then the layer-norm Jacobian.
  Scalar value_and_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G) const
  {
    constexpr std::string_view who = "EnergyTransformerEnergy::value_and_gradient";
    detail::require_tokens(who, Y, dim());
    detail::require_shape(who, "G", G, Y.rows(), Y.cols());
    Matrix<Scalar> dEdg(Y.rows(), Y.cols());
    const Scalar energy = evaluate(norm_.normalise(Y), options_.terms, &dEdg);
    norm_.apply_jacobian(Y, dEdg, G);
    return energy;
  }

  /// The energy at Y; writes dE/dg, the gradient with respect to the layer-normalised tokens
  /// g = LayerNorm(Y), into G (n x d). This is the direction of the Energy Transformer step.
  Scalar value_and_activation_gradient(const ConstMatrixRef<Scalar>& Y,
                                       MatrixRef<Scalar> G) const
  {
    return value_and_activation_gradient(Y, G, options_.terms);
  }

  /// The same for the given terms instead of this energy's own (alternating sub-steps use it).
  Scalar value_and_activation_gradient(const ConstMatrixRef<Scalar>& Y, MatrixRef<Scalar> G,
                                       EnergyTransformerTerms terms) const
  {
    constexpr std::string_view who = "EnergyTransformerEnergy::value_and_activation_gradient";
    detail::require_tokens(who, Y, dim());
    detail::require_shape(who, "G", G, Y.rows(), Y.cols());
    Matrix<Scalar> dEdg(Y.rows(), Y.cols());
    const Scalar energy = evaluate(norm_.normalise(Y), terms, &dEdg);
    G = dEdg;
    return energy;
  }

private:
  // The chosen terms at the normalised tokens g; adds dE/dg into *dEdg when it is given.
  Scalar evaluate(const Matrix<Scalar>& g, EnergyTransformerTerms terms,
                  Matrix<Scalar>* dEdg) const
  {
    if (dEdg)
      dEdg->setZero(g.rows(), g.cols());
    Scalar energy = 0;
    if (terms != EnergyTransformerTerms::memory)
      for (std::size_t h = 0; h < keys_.size(); ++h)
        energy += attention_head(g, h, dEdg);
    if (terms != EnergyTransformerTerms::attention && memories_.rows() > 0) {
      // H = g xi^T (n x M); E_hop = -0.5 ||ReLU(H)||^2, dE_hop/dg = -ReLU(H) xi.
      const Matrix<Scalar> R = (g * memories_.transpose()).cwiseMax(Scalar(0));
      energy -= Scalar(0.5) * R.squaredNorm();
      if (dEdg)
        dEdg->noalias() -= R * memories_;
    }
    return energy;
  }

  // One head's -(1/beta) sum_C lse_{B (!= C)} beta K_B . Q_C, and its gradient into *dEdg.
  Scalar attention_head(const Matrix<Scalar>& g, std::size_t h, Matrix<Scalar>* dEdg) const
  {
    const Eigen::Index n = g.rows();
    const Matrix<Scalar> K = g * keys_[h];
    const Matrix<Scalar> Q = g * queries_[h];

    // Column C of T holds the logits of query C over the keys B, then their softmax P.
    Matrix<Scalar> T = beta_ * (K * Q.transpose());
    Scalar energy = 0;
    for (Eigen::Index C = 0; C < n; ++C) {
      auto column = T.col(C);
      if (!options_.include_self) {
        if (n == 1) {
          column.setZero();
          continue;
        }
        column(C) = -std::numeric_limits<Scalar>::infinity();
      }
      const Scalar top = column.maxCoeff();
      column = (column.array() - top).exp().matrix();
      const Scalar sum = column.sum();
      column /= sum;
      energy -= (top + std::log(sum)) / beta_;
    }

    // dE/dK = -P Q, dE/dQ = -P^T K, then back to g through W_K^T and W_Q^T.
    if (dEdg) {
      const Matrix<Scalar> dK = -(T * Q);
      const Matrix<Scalar> dQ = -(T.transpose() * K);
      dEdg->noalias() += dK * keys_[h].transpose();
      dEdg->noalias() += dQ * queries_[h].transpose();
    }
    return energy;
  }

  LayerNormLagrangian<Scalar> norm_;
  std::vector<Matrix<Scalar>> keys_;
  std::vector<Matrix<Scalar>> queries_;
  Matrix<Scalar> memories_;
  Scalar beta_;
  EnergyTransformerOptions options_;
};

}  // namespace unfold
