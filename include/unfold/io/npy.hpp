#pragma once

/// \file
/// Reading and writing NumPy `.npy` files (format versions 1.0 and 2.0) as Eigen matrices.
///
/// Supported: dtypes '<f4', '<f8', '<i8' and '|b1'; C and Fortran order; 0 to 3 dimensions.
/// A 0-d array reads as 1 x 1, a 1-d array of n entries as a 1 x n row, a 2-d array as itself,
/// and a 3-d array of shape (s, r, c) as a list of s matrices of r x c (`read_npy_stack`).
/// Anything malformed (bad magic, unsupported version or dtype, a header that does not parse,
/// truncated or surplus data, a boolean byte other than 0 or 1) throws `std::runtime_error`
/// naming the file. Files are written as version 1.0, little-endian, C order.

#include "unfold/core/types.hpp"

#include <Eigen/Core>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace unfold::io {

/// The element types a .npy file may hold here.
enum class NpyType {
  float32,  ///< '<f4'
  float64,  ///< '<f8'
  int64,    ///< '<i8'
  boolean,  ///< '|b1'
};

/// \brief A .npy array as stored: element type, shape, order and the raw little-endian bytes.
struct NpyArray {
  NpyType type = NpyType::float64;
  std::vector<std::int64_t> shape;  ///< 0 to 3 extents, outermost first as in NumPy
  bool fortran_order = false;       ///< true: first index fastest; false: last index fastest
  std::vector<unsigned char> data;  ///< size() * item_size() bytes

  /// The number of elements, the product of the extents (1 for a 0-d array).
  [[nodiscard]] std::int64_t size() const
  {
    std::int64_t count = 1;
    for (const std::int64_t extent : shape)
      count *= extent;
    return count;
  }
};

namespace detail {

[[noreturn]] inline void npy_fail(const std::string& path, const std::string& what)
{
  throw std::runtime_error("unfold::io: '" + path + "': " + what);
}

inline std::size_t item_size(NpyType type)
{
  switch (type) {
    case NpyType::float32:
      return 4;
    case NpyType::float64:
    case NpyType::int64:
      return 8;
    case NpyType::boolean:
      return 1;
  }
  return 0;
}

inline const char* descr_of(NpyType type)
{
  switch (type) {
    case NpyType::float32:
      return "<f4";
    case NpyType::float64:
      return "<f8";
    case NpyType::int64:
      return "<i8";
    case NpyType::boolean:
      return "|b1";
  }
  return "";
}

/// Reads a little-endian value of type T from `bytes`, whatever the host byte order.
template <class T>
T load_little_endian(const unsigned char* bytes)
{
  unsigned char buffer[sizeof(T)];
  std::memcpy(buffer, bytes, sizeof(T));
  if constexpr (std::endian::native == std::endian::big)
    for (std::size_t i = 0; i < sizeof(T) / 2; ++i)
      std::swap(buffer[i], buffer[sizeof(T) - 1 - i]);
  T value;
  std::memcpy(&value, buffer, sizeof(T));
  return value;
}

/// Appends the little-endian bytes of `value` to `out`.
template <class T>
void store_little_endian(T value, std::vector<unsigned char>& out)
{
  unsigned char buffer[sizeof(T)];
  std::memcpy(buffer, &value, sizeof(T));
  if constexpr (std::endian::native == std::endian::big)
    for (std::size_t i = 0; i < sizeof(T) / 2; ++i)
      std::swap(buffer[i], buffer[sizeof(T) - 1 - i]);
  out.insert(out.end(), buffer, buffer + sizeof(T));
}

/// A reader for the Python dict literal of a .npy header, e.g.
/// "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }".
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  NpyArray parse()
  {
    NpyArray array;
    bool seen_descr = false;
    bool seen_order = false;
    bool seen_shape = false;

    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}')
        break;
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        array.type = dtype(string_literal());
        seen_descr = true;
      }
      else if (key == "fortran_order") {
        array.fortran_order = boolean_literal();
        seen_order = true;
      }
      else if (key == "shape") {
        array.shape = shape_tuple();
        seen_shape = true;
      }
      else {
        fail("unexpected header key '" + key + "'");
      }
      skip_space();
      if (peek() == ',')
        ++pos_;
      else if (peek() != '}')
        fail("expected ',' or '}' in the header");
    }
    ++pos_;

    skip_space();
    if (pos_ != text_.size())
      fail("unexpected text after the header dictionary");
    if (!seen_descr || !seen_order || !seen_shape)
      fail("the header lacks one of 'descr', 'fortran_order', 'shape'");
    return array;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const
  {
    npy_fail(path_, "malformed header (" + what + "): " + std::string(text_));
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  void skip_space()
  {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n'))
      ++pos_;
  }

  void expect(char c)
  {
    skip_space();
    if (peek() != c)
      fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  std::string string_literal()
  {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"')
      fail("expected a quoted string");
    const std::size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos)
      fail("unterminated string");
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return value;
  }

  bool boolean_literal()
  {
    skip_space();
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }

  std::vector<std::int64_t> shape_tuple()
  {
    std::vector<std::int64_t> shape;
    expect('(');
    while (true) {
      skip_space();
      if (peek() == ')')
        break;
      if (peek() < '0' || peek() > '9')
        fail("expected a non-negative integer in the shape");
      std::int64_t extent = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (extent > (std::numeric_limits<std::int64_t>::max() - 9) / 10)
          fail("shape extent too large");
        extent = 10 * extent + (peek() - '0');
        ++pos_;
      }
      shape.push_back(extent);
      skip_space();
      if (peek() == ',')
        ++pos_;
      else if (peek() != ')')
        fail("expected ',' or ')' in the shape");
    }
    ++pos_;
    return shape;
  }

  NpyType dtype(const std::string& descr) const
  {
    if (descr == "<f4")
      return NpyType::float32;
    if (descr == "<f8")
      return NpyType::float64;
    if (descr == "<i8")
      return NpyType::int64;
    if (descr == "|b1")
      return NpyType::boolean;
    npy_fail(path_, "unsupported dtype '" + descr + "', expected '<f4', '<f8', '<i8' or '|b1'");
  }

  std::string_view text_;
  const std::string& path_;
  std::size_t pos_ = 0;
};

/// Converts element `flat` (storage order) of `array` to T, checking the dtype fits T.
template <class T>
T element(const NpyArray& array, std::int64_t flat)
{
  const unsigned char* bytes = array.data.data() + std::size_t(flat) * item_size(array.type);
  switch (array.type) {
    case NpyType::float32:
      return static_cast<T>(load_little_endian<float>(bytes));
    case NpyType::float64:
      return static_cast<T>(load_little_endian<double>(bytes));
    case NpyType::int64:
      return static_cast<T>(load_little_endian<std::int64_t>(bytes));
    case NpyType::boolean:
      return static_cast<T>(bytes[0] != 0);
  }
  return T{};
}

/// Throws unless the file's dtype may be read as T: numbers as float, double or int64
/// (int64 from '<i8' only), booleans as bool only.
template <class T>
void require_readable_as(const NpyArray& array, const std::string& path)
{
  const bool is_bool_file = array.type == NpyType::boolean;
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>)
    ok = is_bool_file;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    ok = array.type == NpyType::int64;
  else
    ok = !is_bool_file;
  if (!ok)
    npy_fail(path, std::string("dtype '") + descr_of(array.type) +
                       "' cannot be read into the requested element type");
}

/// The storage index of element (i0, i1, i2) of an array of shape (e0, e1, e2).
inline std::int64_t storage_index(const NpyArray& array, std::int64_t i0, std::int64_t i1,
                                  std::int64_t i2)
{
  std::int64_t e0 = 1;
  std::int64_t e1 = 1;
  std::int64_t e2 = 1;
  if (array.shape.size() == 3) {
    e0 = array.shape[0];
    e1 = array.shape[1];
    e2 = array.shape[2];
  }
  else if (array.shape.size() == 2) {
    e1 = array.shape[0];
    e2 = array.shape[1];
  }
  else if (array.shape.size() == 1) {
    e2 = array.shape[0];
  }
  if (array.fortran_order)
    return i0 + e0 * (i1 + e1 * i2);
  return (i0 * e1 + i1) * e2 + i2;
}

/// Slice `s` of a 3-d array, or the whole of a 0-2-d one, as an Eigen matrix of T.
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> slice(const NpyArray& array, std::int64_t s)
{
  const std::size_t dims = array.shape.size();
  const std::int64_t rows = dims >= 2 ? array.shape[dims - 2] : 1;
  const std::int64_t cols = dims >= 1 ? array.shape[dims - 1] : 1;
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> out(rows, cols);
  if (rows == 0 || cols == 0)
    return out;
  for (std::int64_t j = 0; j < cols; ++j)
    for (std::int64_t i = 0; i < rows; ++i)
      out(i, j) = element<T>(array, storage_index(array, s, i, j));
  return out;
}

}  // namespace detail

/// \brief Reads a .npy file into its type, shape, order and raw bytes.
/// \throws std::runtime_error naming the file if it cannot be opened or is malformed.
inline NpyArray read_npy(const std::string& path)
{
  std::ifstream file(path, std::ios::binary);
  if (!file)
    detail::npy_fail(path, "cannot open the file");
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(file)),
                                         std::istreambuf_iterator<char>());

  // Preamble: "\x93NUMPY", major and minor version, header length (2 bytes in 1.0, 4 in 2.0).
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (bytes.size() < 10 || std::memcmp(bytes.data(), magic, 6) != 0)
    detail::npy_fail(path, "not a .npy file (bad magic string)");
  const int major = bytes[6];
  const int minor = bytes[7];
  if ((major != 1 && major != 2) || minor != 0)
    detail::npy_fail(path, "unsupported format version " + std::to_string(major) + "." +
                               std::to_string(minor) + ", expected 1.0 or 2.0");
  std::size_t header_start = 10;
  std::size_t header_length = detail::load_little_endian<std::uint16_t>(bytes.data() + 8);
  if (major == 2) {
    if (bytes.size() < 12)
      detail::npy_fail(path, "truncated preamble");
    header_start = 12;
    header_length = detail::load_little_endian<std::uint32_t>(bytes.data() + 8);
  }
  if (bytes.size() - header_start < header_length)
    detail::npy_fail(path, "truncated header: " + std::to_string(header_length) +
                               " bytes announced, " +
                               std::to_string(bytes.size() - header_start) + " present");

  // Header: a Python dict literal, padded with spaces and ended by a newline.
  const std::string header(bytes.begin() + std::ptrdiff_t(header_start),
                           bytes.begin() + std::ptrdiff_t(header_start + header_length));
  NpyArray array = detail::HeaderParser(header, path).parse();
  if (array.shape.size() > 3)
    detail::npy_fail(path, "has " + std::to_string(array.shape.size()) +
                               " dimensions, expected 0 to 3");

  // Data: exactly size() items must follow the header.
  const std::size_t item = detail::item_size(array.type);
  std::size_t expected = item;
  for (const std::int64_t extent : array.shape) {
    if (extent != 0 && expected > std::numeric_limits<std::size_t>::max() / std::size_t(extent))
      detail::npy_fail(path, "shape too large");
    expected *= std::size_t(extent);
  }
  // An empty array holds no data to bound its other extents; cap them, so that a tiny file
  // cannot make a reader loop over, or reserve, billions of empty slices.
  constexpr std::int64_t empty_extent_limit = std::int64_t(1) << 20;
  if (expected == 0)
    for (const std::int64_t extent : array.shape)
      if (extent > empty_extent_limit)
        detail::npy_fail(path, "is empty but has an extent of " + std::to_string(extent) +
                                   ", expected at most 2^20 beside an extent of 0");
  const std::size_t present = bytes.size() - header_start - header_length;
  if (present < expected)
    detail::npy_fail(path, "truncated data: " + std::to_string(expected) + " bytes expected, " +
                               std::to_string(present) + " present");
  if (present > expected)
    detail::npy_fail(path, std::to_string(present - expected) + " bytes after the data");
  array.data.assign(bytes.begin() + std::ptrdiff_t(header_start + header_length), bytes.end());

  if (array.type == NpyType::boolean)
    for (const unsigned char b : array.data)
      if (b > 1)
        detail::npy_fail(path, "boolean data holds the byte " + std::to_string(b) +
                                   ", expected 0 or 1");
  return array;
}

/// \brief Reads a 0-, 1- or 2-d .npy file as a matrix: 0-d as 1 x 1, 1-d of n entries as
/// 1 x n, 2-d of shape (r, c) as r x c.
/// \tparam T float or double (from any numeric dtype), std::int64_t (from '<i8'), bool (from
/// '|b1').
/// \throws std::runtime_error naming the file if it is malformed, 3-d, or of another dtype.
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> read_npy_matrix(const std::string& path)
{
  const NpyArray array = read_npy(path);
  detail::require_readable_as<T>(array, path);
  if (array.shape.size() > 2)
    detail::npy_fail(path, "has " + std::to_string(array.shape.size()) +
                               " dimensions, expected 0 to 2 for a matrix");
  return detail::slice<T>(array, 0);
}

/// \brief Reads a 3-d .npy file of shape (s, r, c) as s matrices of r x c.
/// \tparam T as for `read_npy_matrix`.
/// \throws std::runtime_error naming the file if it is malformed, not 3-d, or of another dtype.
template <class T>
std::vector<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>> read_npy_stack(
    const std::string& path)
{
  const NpyArray array = read_npy(path);
  detail::require_readable_as<T>(array, path);
  if (array.shape.size() != 3)
    detail::npy_fail(path, "has " + std::to_string(array.shape.size()) +
                               " dimensions, expected 3 for a stack of matrices");
  std::vector<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>> out;
  out.reserve(std::size_t(array.shape[0]));
  for (std::int64_t s = 0; s < array.shape[0]; ++s)
    out.push_back(detail::slice<T>(array, s));
  return out;
}

/// \brief Writes an array as a version 1.0 .npy file, its header padded so the data starts at
/// a multiple of 64 bytes.
/// \throws std::runtime_error naming the file if the data size does not match the shape, the
/// shape has more than 3 dimensions, or the file cannot be written.
inline void write_npy(const std::string& path, const NpyArray& array)
{
  if (array.shape.size() > 3)
    detail::npy_fail(path, "cannot write " + std::to_string(array.shape.size()) +
                               " dimensions, expected 0 to 3");
  if (array.data.size() != std::size_t(array.size()) * detail::item_size(array.type))
    detail::npy_fail(path, "data holds " + std::to_string(array.data.size()) +
                               " bytes, the shape needs " +
                               std::to_string(std::size_t(array.size()) *
                                              detail::item_size(array.type)));

  // Header dict, e.g. "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }".
  std::string header = std::string("{'descr': '") + detail::descr_of(array.type) +
                       "', 'fortran_order': " + (array.fortran_order ? "True" : "False") +
                       ", 'shape': (";
  for (std::size_t k = 0; k < array.shape.size(); ++k)
    header += (k > 0 ? ", " : "") + std::to_string(array.shape[k]);
  header += array.shape.size() == 1 ? ",), }" : "), }";
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  if (header.size() > std::numeric_limits<std::uint16_t>::max())
    detail::npy_fail(path, "header too long for format 1.0");

  std::vector<unsigned char> bytes = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  detail::store_little_endian(std::uint16_t(header.size()), bytes);
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), array.data.begin(), array.data.end());

  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file)
    detail::npy_fail(path, "cannot open the file for writing");
  file.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!file)
    detail::npy_fail(path, "writing failed");
}

/// \brief Writes a matrix as a 2-d .npy file of shape (rows, cols), or as a 1-d file of
/// cols entries when `as_vector` is set and the matrix has one row (e.g. a bias).
/// \tparam Derived a dense expression of float, double, std::int64_t or bool.
template <class Derived>
void write_npy(const std::string& path, const Eigen::DenseBase<Derived>& m, bool as_vector = false)
{
  using T = typename Derived::Scalar;
  NpyArray array;
  if constexpr (std::is_same_v<T, float>)
    array.type = NpyType::float32;
  else if constexpr (std::is_same_v<T, double>)
    array.type = NpyType::float64;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    array.type = NpyType::int64;
  else if constexpr (std::is_same_v<T, bool>)
    array.type = NpyType::boolean;
  else
    static_assert(std::is_same_v<T, float>, "write_npy: element type must be float, double, "
                                            "std::int64_t or bool");

  if (as_vector && m.rows() != 1)
    detail::npy_fail(path, "as_vector needs one row, the matrix has " + std::to_string(m.rows()));
  if (as_vector)
    array.shape = {std::int64_t(m.cols())};
  else
    array.shape = {std::int64_t(m.rows()), std::int64_t(m.cols())};

  // C order: row by row.
  array.data.reserve(std::size_t(m.size()) * detail::item_size(array.type));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) {
      if constexpr (std::is_same_v<T, bool>)
        array.data.push_back(m(i, j) ? 1 : 0);
      else
        detail::store_little_endian(T(m(i, j)), array.data);
    }
  write_npy(path, array);
}

}  // namespace unfold::io
