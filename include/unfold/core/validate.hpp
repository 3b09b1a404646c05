#pragma once

/// \file
/// Argument checks shared by every public entry point.
///
/// Each check throws `std::invalid_argument` with a message of the form
/// "who: argument is ..., expected ...", naming the function, the argument and the shapes.

#include <Eigen/Core>

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace unfold::detail {

[[noreturn]] inline void fail(std::string_view who, const std::string& what)
{
  std::string message(who);
  message += ": ";
  message += what;
  throw std::invalid_argument(message);
}

template <class Derived>
std::string shape_of(const Eigen::DenseBase<Derived>& m)
{
  std::ostringstream out;
  out << m.rows() << " x " << m.cols();
  return out.str();
}

template <class Derived>
void require_rows(std::string_view who, std::string_view arg, const Eigen::DenseBase<Derived>& m,
                  Eigen::Index rows, std::string_view expected)
{
  if (m.rows() != rows) {
    std::ostringstream out;
    out << arg << " has " << m.rows() << " rows, expected " << expected << " = " << rows;
    fail(who, out.str());
  }
}

template <class Derived>
void require_cols(std::string_view who, std::string_view arg, const Eigen::DenseBase<Derived>& m,
                  Eigen::Index cols, std::string_view expected)
{
  if (m.cols() != cols) {
    std::ostringstream out;
    out << arg << " has " << m.cols() << " columns, expected " << expected << " = " << cols;
    fail(who, out.str());
  }
}

template <class Derived>
void require_shape(std::string_view who, std::string_view arg, const Eigen::DenseBase<Derived>& m,
                   Eigen::Index rows, Eigen::Index cols)
{
  if (m.rows() != rows || m.cols() != cols) {
    std::ostringstream out;
    out << arg << " is " << shape_of(m) << ", expected " << rows << " x " << cols;
    fail(who, out.str());
  }
}

template <class Derived>
void require_nonempty(std::string_view who, std::string_view arg,
                      const Eigen::DenseBase<Derived>& m)
{
  if (m.rows() == 0 || m.cols() == 0)
    fail(who, std::string(arg) + " is " + shape_of(m) + ", expected at least 1 x 1");
}

template <class Derived>
void require_finite(std::string_view who, std::string_view arg, const Eigen::DenseBase<Derived>& m)
{
  for (Eigen::Index j = 0; j < m.cols(); ++j)
    for (Eigen::Index i = 0; i < m.rows(); ++i)
      if (!std::isfinite(m(i, j))) {
        std::ostringstream out;
        out << arg << " (" << shape_of(m) << ") has a non-finite entry " << m(i, j) << " at ("
            << i << ", " << j << ")";
        fail(who, out.str());
      }
}

template <class Derived>
void require_square(std::string_view who, std::string_view arg, const Eigen::DenseBase<Derived>& m)
{
  if (m.rows() != m.cols())
    fail(who, std::string(arg) + " is " + shape_of(m) + ", expected a square matrix");
}

/// Symmetric up to a relative tolerance: max |m - m^T| <= tol * max(1, max |m|).
template <class Derived>
void require_symmetric(std::string_view who, std::string_view arg,
                       const Eigen::MatrixBase<Derived>& m)
{
  using Scalar = typename Derived::Scalar;
  require_square(who, arg, m);
  const Scalar scale = std::max(Scalar(1), m.cwiseAbs().maxCoeff());
  const Scalar asymmetry = (m - m.transpose()).cwiseAbs().maxCoeff();
  const Scalar tol = Scalar(100) * Eigen::NumTraits<Scalar>::epsilon() * scale;
  if (asymmetry > tol) {
    std::ostringstream out;
    out << arg << " (" << shape_of(m) << ") is not symmetric: max |" << arg << " - " << arg
        << "^T| = " << asymmetry;
    fail(who, out.str());
  }
}

template <class Scalar>
void require_positive(std::string_view who, std::string_view arg, Scalar value)
{
  if (!(value > Scalar(0)) || !std::isfinite(value)) {
    std::ostringstream out;
    out << arg << " = " << value << ", expected a finite value > 0";
    fail(who, out.str());
  }
}

template <class Scalar>
void require_nonnegative(std::string_view who, std::string_view arg, Scalar value)
{
  if (!(value >= Scalar(0)) || !std::isfinite(value)) {
    std::ostringstream out;
    out << arg << " = " << value << ", expected a finite value >= 0";
    fail(who, out.str());
  }
}

/// Checks the token matrix Y: at least one token, d columns, finite entries.
template <class Derived>
void require_tokens(std::string_view who, const Eigen::DenseBase<Derived>& Y, Eigen::Index d)
{
  require_nonempty(who, "Y", Y);
  require_cols(who, "Y", Y, d, "d");
  require_finite(who, "Y", Y);
}

}  // namespace unfold::detail
