#pragma once

/// \file
/// The steps of CRATE (Yu et al. 2023; MATH.md section 6): multi-head subspace self-attention
/// (MSSA) as an approximate gradient step on the coding rate, the exact gradient step beside
/// it, the ISTA step on the sparse-coding energy, and a CRATE forward pass that reports the
/// coding rate and the sparsity after every layer.

#include "../energy/crate.hpp"
#include "descent_bound.hpp"
#include "detail_softmax.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace unfold {

/// One MSSA step on tokens Z (n x d), written into `Zout`:
///
///     Z+ = (1 - kappa) Z + kappa sum_k ( softmax_rows(W_k W_k^T) W_k ) U_k^T,   W_k = Z U_k,
///
/// with kappa = params.step_size and the bases U_k of the coding-rate energy.
///
/// What it approximates: with a_k = p_k / (n eps^2), grad R_c = sum_k a_k (I_n + a_k W_k
/// W_k^T)^{-1} W_k U_k^T (push-through form of CodingRateEnergy's gradient). The first-order
/// Neumann expansion (I + a W W^T)^{-1} ~ I - a W W^T gives
/// grad R_c ~ sum_k a_k (W_k - (a_k W_k W_k^T) W_k) U_k^T. CRATE replaces the similarity
/// a_k W_k W_k^T by the row-stochastic softmax(W_k W_k^T). When the bases are complete
/// (sum_k U_k U_k^T = I, so sum_k W_k U_k^T = Z), the step above is then
/// Z - kappa sum_k (W_k - softmax(W_k W_k^T) W_k) U_k^T, i.e. a step along minus that
/// approximate gradient, rescaled by 1 / a_k. The approximation carries no descent guarantee
/// (mssa_bound reports 0); coding_rate_gradient_step is the exact step.
///
/// \param Z tokens, n x d. \param Zout output, n x d; may be `Z` itself.
template <Real Scalar>
void mssa_step(const CodingRateEnergy<Scalar>& energy, const ConstMatrixRef<Scalar>& Z,
               const StepParams<Scalar>& params, MatrixRef<Scalar> Zout)
{
  constexpr std::string_view who = "mssa_step";
  params.validate(who);
  detail::require_tokens(who, Z, energy.dim());
  detail::require_shape(who, "Zout", Zout, Z.rows(), Z.cols());

  const Eigen::Index n = Z.rows();
  Matrix<Scalar> heads = Matrix<Scalar>::Zero(n, Z.cols());
  Matrix<Scalar> weights(n, n);
  for (const Matrix<Scalar>& U : energy.bases()) {
    // The logits W W^T are symmetric, so column i holds the weights of query i.
    const Matrix<Scalar> W = Z * U;
    weights.setZero();
    weights.template selfadjointView<Eigen::Lower>().rankUpdate(W);
    weights = weights.template selfadjointView<Eigen::Lower>();
    detail::softmax_columns_in_place(weights);
    const Matrix<Scalar> mixed = weights.transpose() * W;
    heads.noalias() += mixed * U.transpose();
  }
  const Scalar kappa = params.step_size;
  Zout = (Scalar(1) - kappa) * Z + kappa * heads;
}

/// MSSA is an approximate gradient step: the theory proves nothing (max_step_size = 0).
template <Real Scalar>
DescentBound<Scalar> mssa_bound(const StepParams<Scalar>& params)
{
  params.validate("mssa_bound");
  return {params.step_size, Scalar(0), "MSSA approximates a gradient step: no guarantee"};
}

/// The exact gradient step Z+ = Z - alpha grad R_c(Z), written into `Zout` (may be `Z`).
template <Real Scalar>
void coding_rate_gradient_step(const CodingRateEnergy<Scalar>& energy,
                               const ConstMatrixRef<Scalar>& Z, const StepParams<Scalar>& params,
                               MatrixRef<Scalar> Zout)
{
  constexpr std::string_view who = "coding_rate_gradient_step";
  params.validate(who);
  detail::require_tokens(who, Z, energy.dim());
  detail::require_shape(who, "Zout", Zout, Z.rows(), Z.cols());
  Matrix<Scalar> G(Z.rows(), Z.cols());
  energy.gradient(Z, G);
  Zout = Z - params.step_size * G;
}

/// The descent lemma for the coding rate at n tokens: alpha <= 2 / lipschitz(n).
template <Real Scalar>
DescentBound<Scalar> coding_rate_gradient_bound(const CodingRateEnergy<Scalar>& energy,
                                                Eigen::Index n, const StepParams<Scalar>& params)
{
  params.validate("coding_rate_gradient_bound");
  return {params.step_size, Scalar(2) / energy.lipschitz(n),
          "coding-rate gradient step: alpha <= 2 n eps^2 / lambda_max(sum p_k U_k U_k^T)"};
}

/// Parameters of the ISTA step.
template <Real Scalar>
struct IstaParams {
  /// eta; the step descends for eta <= 2 / ||D||_2^2 (1 / ||D||_2^2 is the usual choice).
  Scalar step_size = Scalar(0.1);

  void validate(std::string_view who) const
  {
    detail::require_positive(who, "step_size", step_size);
  }
};

/// One ISTA (proximal-gradient) step on the sparse-coding energy from the code X (n x m):
///
///     X+ = prox_{eta lambda}( X - eta (X D - Z) D^T ),
///
/// with the prox max(0, . - eta lambda) for the non-negative lasso (soft thresholding
/// otherwise). With L = ||D||_2^2 and X feasible,
/// F(X+) <= F(X) - (1/eta - L/2) ||X+ - X||^2, so it descends for eta <= 2 / L.
///
/// \param X code, n x m. \param Xout output, n x m; may be `X` itself.
template <Real Scalar>
void ista_step(const SparseCodingEnergy<Scalar>& energy, const ConstMatrixRef<Scalar>& X,
               const IstaParams<Scalar>& params, MatrixRef<Scalar> Xout)
{
  constexpr std::string_view who = "ista_step";
  params.validate(who);
  detail::require_tokens(who, X, energy.dim());
  detail::require_rows(who, "Y", X, energy.tokens(), "n");
  detail::require_shape(who, "Xout", Xout, X.rows(), X.cols());

  const Scalar eta = params.step_size;
  const Matrix<Scalar> residual = energy.signal() - X * energy.dictionary();
  Matrix<Scalar> moved = X;
  moved.noalias() += eta * residual * energy.dictionary().transpose();
  energy.prox(moved, eta, Xout);
}

/// eta <= 2 / ||D||_2^2 from a feasible X (X >= 0 for the non-negative lasso); 0 otherwise.
template <Real Scalar>
DescentBound<Scalar> ista_bound(const SparseCodingEnergy<Scalar>& energy,
                                const ConstMatrixRef<Scalar>& X, const IstaParams<Scalar>& params)
{
  params.validate("ista_bound");
  if (energy.nonnegative() && (X.array() < Scalar(0)).any())
    return {params.step_size, Scalar(0), "ISTA from a point outside X >= 0: no guarantee"};
  const Scalar L = energy.lipschitz();
  return {params.step_size, L > Scalar(0) ? Scalar(2) / L : DescentBound<Scalar>::unbounded(),
          "ISTA (proximal gradient): eta <= 2 / ||D||_2^2"};
}

/// CRATE's ISTA block on tokens Z (n x d) with a square dictionary D (d x d): one
/// non-negative ISTA step from X = Z on lambda ||X||_1 + 0.5 ||Z - X D||^2 + indicator(X >= 0),
///
///     Z+ = ReLU( Z + eta (Z - Z D) D^T - eta lambda ),
///
/// written into `Zout` (may be `Z`). The signal is the step's own input, so the energy it is a
/// step on changes with Z; when Z has negative entries that energy is +infinity at X = Z and
/// the step's descent is vacuous.
template <Real Scalar>
void crate_ista_step(const ConstMatrixRef<Scalar>& D, Scalar lambda,
                     const ConstMatrixRef<Scalar>& Z, const IstaParams<Scalar>& params,
                     MatrixRef<Scalar> Zout)
{
  constexpr std::string_view who = "crate_ista_step";
  params.validate(who);
  detail::require_square(who, "D", D);
  detail::require_finite(who, "D", D);
  detail::require_nonnegative(who, "lambda", lambda);
  detail::require_tokens(who, Z, D.rows());
  detail::require_shape(who, "Zout", Zout, Z.rows(), Z.cols());

  // The same arithmetic as ista_step with signal = code = Z, without building the energy.
  const Scalar eta = params.step_size;
  const Matrix<Scalar> residual = Z - Z * D;
  Matrix<Scalar> moved = Z;
  moved.noalias() += eta * residual * D.transpose();
  Zout = (moved.array() - eta * lambda).cwiseMax(Scalar(0)).matrix();
}

/// The MSSA step as an object for the unfolding operator, traced against the coding rate.
template <Real Scalar_>
class MSSAStep {
public:
  using Scalar = Scalar_;
  using EnergyType = CodingRateEnergy<Scalar>;

  explicit MSSAStep(EnergyType energy, StepParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("MSSAStep");
  }

  std::string_view name() const { return "mssa"; }
  const EnergyType& energy() const { return energy_; }
  const StepParams<Scalar>& params() const { return params_; }
  void apply(const ConstMatrixRef<Scalar>& Z, MatrixRef<Scalar> Zout) const
  {
    mssa_step(energy_, Z, params_, Zout);
  }
  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>&) const { return mssa_bound(params_); }

private:
  EnergyType energy_;
  StepParams<Scalar> params_;
};

/// The exact gradient step on the coding rate as an object for the unfolding operator.
template <Real Scalar_>
class CodingRateGradientStep {
public:
  using Scalar = Scalar_;
  using EnergyType = CodingRateEnergy<Scalar>;

  explicit CodingRateGradientStep(EnergyType energy, StepParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("CodingRateGradientStep");
  }

  std::string_view name() const { return "coding_rate_gradient"; }
  const EnergyType& energy() const { return energy_; }
  const StepParams<Scalar>& params() const { return params_; }
  void apply(const ConstMatrixRef<Scalar>& Z, MatrixRef<Scalar> Zout) const
  {
    coding_rate_gradient_step(energy_, Z, params_, Zout);
  }
  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>& Z) const
  {
    return coding_rate_gradient_bound(energy_, Z.rows(), params_);
  }

private:
  EnergyType energy_;
  StepParams<Scalar> params_;
};

/// ISTA on a fixed signal as an object for the unfolding operator: a stack of these unfolds
/// ISTA iterations on one sparse-coding problem, the code X being the tokens.
template <Real Scalar_>
class IstaStep {
public:
  using Scalar = Scalar_;
  using EnergyType = SparseCodingEnergy<Scalar>;

  explicit IstaStep(EnergyType energy, IstaParams<Scalar> params = {})
      : energy_(std::move(energy)), params_(params)
  {
    params_.validate("IstaStep");
  }

  std::string_view name() const { return "ista"; }
  const EnergyType& energy() const { return energy_; }
  const IstaParams<Scalar>& params() const { return params_; }
  void apply(const ConstMatrixRef<Scalar>& X, MatrixRef<Scalar> Xout) const
  {
    ista_step(energy_, X, params_, Xout);
  }
  DescentBound<Scalar> bound(const ConstMatrixRef<Scalar>& X) const
  {
    return ista_bound(energy_, X, params_);
  }

private:
  EnergyType energy_;
  IstaParams<Scalar> params_;
};

/// One CRATE layer: MSSA with step kappa on the coding rate, then the ISTA block with
/// dictionary D (d x d), sparsity weight lambda and step eta.
template <Real Scalar>
struct CrateLayer {
  CodingRateEnergy<Scalar> compression;
  Matrix<Scalar> dictionary;
  Scalar lambda = Scalar(0.1);
  StepParams<Scalar> attention{Scalar(1)};
  IstaParams<Scalar> ista{};

  /// Throws std::invalid_argument naming `who` and the offending field.
  void validate(std::string_view who) const
  {
    attention.validate(who);
    ista.validate(who);
    detail::require_nonnegative(who, "lambda", lambda);
    detail::require_square(who, "dictionary", dictionary);
    detail::require_rows(who, "dictionary", dictionary, compression.dim(), "d");
    detail::require_finite(who, "dictionary", dictionary);
  }
};

/// The coding rate and the sparsity of the tokens at one point of a CRATE forward pass.
template <Real Scalar>
struct CrateLayerStats {
  /// R_c of the tokens, with the bases of the layer just run (of layer 0 at the start).
  Scalar coding_rate = 0;

  /// The fraction of token entries that are exactly zero.
  Scalar sparsity = 0;
};

template <Real Scalar>
struct CrateForward {
  /// The tokens after the last layer.
  Matrix<Scalar> tokens;

  /// The start, then one entry per layer: layers.size() + 1 entries.
  std::vector<CrateLayerStats<Scalar>> stats;
};

/// Z+ = crate_ista_step(MSSA(Z)): one CRATE layer on tokens Z (n x d), into `Zout` (may be Z).
template <Real Scalar>
void crate_layer_step(const CrateLayer<Scalar>& layer, const ConstMatrixRef<Scalar>& Z,
                      MatrixRef<Scalar> Zout)
{
  constexpr std::string_view who = "crate_layer_step";
  layer.validate(who);
  Matrix<Scalar> half(Z.rows(), Z.cols());
  mssa_step(layer.compression, Z, layer.attention, half);
  crate_ista_step<Scalar>(layer.dictionary, layer.lambda, half, layer.ista, Zout);
}

/// Runs the CRATE layers in order on tokens Z (n x d) and records the coding rate and the
/// sparsity before the first layer and after each one. Repeat a layer in `layers` for a
/// weight-tied stack. Descent of either quantity is measured, not assumed.
template <Real Scalar>
CrateForward<Scalar> crate_forward(const std::vector<CrateLayer<Scalar>>& layers,
                                   const ConstMatrixRef<Scalar>& Z)
{
  constexpr std::string_view who = "crate_forward";
  if (layers.empty())
    detail::fail(who, "layers is empty, expected at least one layer");
  detail::require_tokens(who, Z, layers.front().compression.dim());

  CrateForward<Scalar> result;
  result.tokens = Z;
  result.stats.push_back({layers.front().compression.value(Z), sparsity(Z)});
  for (const CrateLayer<Scalar>& layer : layers) {
    crate_layer_step(layer, result.tokens, result.tokens);
    result.stats.push_back({layer.compression.value(result.tokens), sparsity(result.tokens)});
  }
  return result;
}

}  // namespace unfold
