#pragma once

// Shared by the tests that read the PyTorch fixtures of tests/fixtures (written by
// make_fixtures.py): where a file is, how to read it in either scalar type, and how close a
// result must be to PyTorch's.

#include <unfold/core/types.hpp>
#include <unfold/io/npy.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace unfold::test {

/// Tolerances against PyTorch: |got - want| <= atol + rtol |want|. `tag` names the stored
/// result of that type (PyTorch's own float32 or float64 run).
template <class Scalar>
struct TorchTolerance;

template <>
struct TorchTolerance<float> {
  static constexpr double atol = 1e-5;
  static constexpr double rtol = 1e-4;
  static constexpr const char* tag = "f32";
};

template <>
struct TorchTolerance<double> {
  static constexpr double atol = 1e-12;
  static constexpr double rtol = 0.0;
  static constexpr const char* tag = "f64";
};

inline std::string fixture_path(const std::string& name, const std::string& file)
{
  return std::string(UNFOLD_FIXTURE_DIR) + "/" + name + "/" + file + ".npy";
}

inline bool has_file(const std::string& name, const std::string& file)
{
  return std::filesystem::exists(fixture_path(name, file));
}

/// Parameters and inputs are stored in float64; a float run gets their float rounding.
template <class Scalar = double>
Matrix<Scalar> load(const std::string& name, const std::string& file)
{
  return io::read_npy_matrix<double>(fixture_path(name, file)).template cast<Scalar>();
}

template <class Scalar>
std::vector<Matrix<Scalar>> load_stack(const std::string& name, const std::string& file)
{
  std::vector<Matrix<Scalar>> out;
  for (const auto& m : io::read_npy_stack<double>(fixture_path(name, file)))
    out.push_back(m.template cast<Scalar>());
  return out;
}

/// PyTorch's result in the same type, stored as `file` + "_f32" or "_f64".
template <class Scalar>
Matrix<Scalar> load_result(const std::string& name, const std::string& file)
{
  const std::string stored = file + "_" + TorchTolerance<Scalar>::tag;
  return io::read_npy_matrix<Scalar>(fixture_path(name, stored));
}

template <class Scalar>
std::vector<Matrix<Scalar>> load_result_stack(const std::string& name, const std::string& file)
{
  const std::string stored = file + "_" + TorchTolerance<Scalar>::tag;
  return io::read_npy_stack<Scalar>(fixture_path(name, stored));
}

inline std::int64_t load_int(const std::string& name, const std::string& file)
{
  return io::read_npy_matrix<std::int64_t>(fixture_path(name, file))(0, 0);
}

inline std::size_t ndims(const std::string& name, const std::string& file)
{
  return io::read_npy(fixture_path(name, file)).shape.size();
}

/// Every entry within the tolerance of its type; the largest error is printed on failure.
template <class Scalar>
void require_close(const Matrix<Scalar>& got, const Matrix<Scalar>& want)
{
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  double max_abs_error = 0.0;
  double worst_ratio = 0.0;  // |got - want| / (atol + rtol |want|), must stay <= 1
  for (Eigen::Index j = 0; j < want.cols(); ++j)
    for (Eigen::Index i = 0; i < want.rows(); ++i) {
      const double error = std::abs(double(got(i, j)) - double(want(i, j)));
      const double allowed = TorchTolerance<Scalar>::atol +
                             TorchTolerance<Scalar>::rtol * std::abs(double(want(i, j)));
      max_abs_error = std::max(max_abs_error, error);
      worst_ratio = std::max(worst_ratio, error / allowed);
    }
  INFO("max_abs_error = " << std::scientific << max_abs_error);
  REQUIRE(worst_ratio <= 1.0);
}

}  // namespace unfold::test
