// libFuzzer target for the .npy reader: unfold::io::read_npy, read_npy_matrix and
// read_npy_stack.
//
// Any input must either load or throw std::runtime_error / std::invalid_argument. Whatever
// read_npy accepts is checked against the format: at most 3 extents, exactly size() items of
// data, booleans 0 or 1. The matrix readers must give every element at the place the shape
// and order put it (recomputed here from the raw bytes), refuse an element type the dtype
// does not allow, and writing the array back with write_npy must read back unchanged.

#include "scratch_file.hpp"

#include <unfold/io/npy.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using unfold::io::NpyArray;
using unfold::io::NpyType;
using unfold_fuzz::require;

template <class T>
using MatrixOf = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

std::size_t item_bytes(NpyType type)
{
  return type == NpyType::boolean ? 1 : type == NpyType::float32 ? 4 : 8;
}

// Element `flat` of the raw data (little-endian host assumed, as on every CI machine here).
template <class T>
T raw_element(const NpyArray& array, std::size_t flat)
{
  const unsigned char* at = array.data.data() + flat * item_bytes(array.type);
  switch (array.type) {
    case NpyType::float32: {
      float value;
      std::memcpy(&value, at, sizeof value);
      return static_cast<T>(value);
    }
    case NpyType::float64: {
      double value;
      std::memcpy(&value, at, sizeof value);
      return static_cast<T>(value);
    }
    case NpyType::int64: {
      std::int64_t value;
      std::memcpy(&value, at, sizeof value);
      return static_cast<T>(value);
    }
    case NpyType::boolean:
      return static_cast<T>(at[0] != 0);
  }
  return T{};
}

template <class T>
bool same(T a, T b)
{
  if constexpr (std::is_floating_point_v<T>)
    return a == b || (std::isnan(a) && std::isnan(b));
  else
    return a == b;
}

// Matrix `m` must be slice `s` of the (s, r, c) array (r = c = 1 for missing leading axes).
template <class T>
void check_slice(const NpyArray& array, const MatrixOf<T>& m, std::size_t s)
{
  const std::size_t dims = array.shape.size();
  const auto rows = static_cast<std::size_t>(dims >= 2 ? array.shape[dims - 2] : 1);
  const auto cols = static_cast<std::size_t>(dims >= 1 ? array.shape[dims - 1] : 1);
  const auto slices = static_cast<std::size_t>(dims == 3 ? array.shape[0] : 1);
  require(static_cast<std::size_t>(m.rows()) == rows && static_cast<std::size_t>(m.cols()) == cols,
          "the matrix has the shape's last two extents");
  if (m.size() == 0)
    return;
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      const std::size_t flat = array.fortran_order ? s + slices * (i + rows * j)
                                                   : (s * rows + i) * cols + j;
      require(same(m(Eigen::Index(i), Eigen::Index(j)), raw_element<T>(array, flat)),
              "each element comes from its place in the data");
    }
}

template <class T>
void check_read_as(const NpyArray& array, const std::string& path, bool allowed)
{
  if (!allowed) {
    bool refused = false;
    try {
      if (array.shape.size() == 3)
        (void)unfold::io::read_npy_stack<T>(path);
      else
        (void)unfold::io::read_npy_matrix<T>(path);
    }
    catch (const std::runtime_error&) {
      refused = true;
    }
    require(refused, "a dtype that does not fit the element type is refused");
    return;
  }
  if (array.shape.size() == 3) {
    const auto stack = unfold::io::read_npy_stack<T>(path);
    require(stack.size() == static_cast<std::size_t>(array.shape[0]),
            "the stack has the first extent's number of matrices");
    for (std::size_t s = 0; s < stack.size(); ++s)
      check_slice<T>(array, stack[s], s);
  }
  else {
    check_slice<T>(array, unfold::io::read_npy_matrix<T>(path), 0);
  }
}

void check(const NpyArray& array, const std::string& path, const std::string& copy_path)
{
  require(array.shape.size() <= 3, "at most 3 extents");
  std::size_t count = 1;
  for (const std::int64_t extent : array.shape) {
    require(extent >= 0, "extents are non-negative");
    count *= static_cast<std::size_t>(extent);
  }
  require(array.data.size() == count * item_bytes(array.type), "the data holds every item");
  require(static_cast<std::size_t>(array.size()) == count, "size() is the product of extents");
  if (array.type == NpyType::boolean)
    for (const unsigned char b : array.data)
      require(b <= 1, "booleans are 0 or 1");

  const bool numeric = array.type != NpyType::boolean;
  check_read_as<double>(array, path, numeric);
  check_read_as<float>(array, path, numeric);
  check_read_as<std::int64_t>(array, path, array.type == NpyType::int64);
  check_read_as<bool>(array, path, !numeric);

  unfold::io::write_npy(copy_path, array);
  const NpyArray again = unfold::io::read_npy(copy_path);
  require(again.type == array.type && again.shape == array.shape &&
              again.fortran_order == array.fortran_order && again.data == array.data,
          "write_npy then read_npy gives the array back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  static const unfold_fuzz::ScratchFile scratch("npy");
  static const unfold_fuzz::ScratchFile copy("npy_copy");
  const std::string& path = scratch.write(data, size);
  NpyArray array;
  try {
    array = unfold::io::read_npy(path);
  }
  catch (const std::runtime_error&) {
    return 0;
  }
  catch (const std::invalid_argument&) {
    return 0;
  }
  // What read_npy accepted, the typed readers must read too (or refuse by dtype), without
  // throwing for any other reason.
  check(array, path, copy.path());
  return 0;
}
