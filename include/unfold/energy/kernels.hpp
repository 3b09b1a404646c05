#pragma once

/// \file
/// Concave, non-decreasing kernels rho for the pairwise attention energy.
///
/// A kernel is a policy with static members, each a function of s = 0.5 ||z_i - z_j||^2 >= 0:
/// - `rho(s)`, the pair energy;
/// - `derivative(s)`, rho'(s) = beta, the attention weight the majoriser puts on the pair;
/// - `log_derivative(s)`, log rho'(s), so that weights can be normalised in the log domain
///   without underflow when the tokens are far apart;
/// - `name`, for traces and tables.

#include <cmath>
#include <string_view>

namespace unfold {

/// rho(s) = -exp(-s), weights exp(-s): the kernel behind softmax attention.
struct ExpKernel {
  static constexpr std::string_view name = "exp";

  template <class Scalar>
  static Scalar rho(Scalar s) { return -std::exp(-s); }

  template <class Scalar>
  static Scalar derivative(Scalar s) { return std::exp(-s); }

  template <class Scalar>
  static Scalar log_derivative(Scalar s) { return -s; }
};

/// rho(s) = log(1 + s), weights 1 / (1 + s): heavy-tailed (Cauchy-like) attention.
struct LogKernel {
  static constexpr std::string_view name = "log";

  template <class Scalar>
  static Scalar rho(Scalar s) { return std::log1p(s); }

  template <class Scalar>
  static Scalar derivative(Scalar s) { return Scalar(1) / (Scalar(1) + s); }

  template <class Scalar>
  static Scalar log_derivative(Scalar s) { return -std::log1p(s); }
};

/// rho(s) = -1 / (1 + s), weights 1 / (1 + s)^2: between the two above in its tail.
struct RationalKernel {
  static constexpr std::string_view name = "rational";

  template <class Scalar>
  static Scalar rho(Scalar s) { return Scalar(-1) / (Scalar(1) + s); }

  template <class Scalar>
  static Scalar derivative(Scalar s)
  {
    const Scalar r = Scalar(1) / (Scalar(1) + s);
    return r * r;
  }

  template <class Scalar>
  static Scalar log_derivative(Scalar s) { return Scalar(-2) * std::log1p(s); }
};

}  // namespace unfold
