// The .npy inputs the fuzzer found: empty arrays with huge extents must be rejected at once,
// not looped over, reserved for, or multiplied past int64.

#include <unfold/io/npy.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <string>

namespace {

// A fuzzer find stays in crashes/ until its reader is fixed, then moves to the corpus with a
// regress_ prefix; the test reads it from wherever it is.
std::string find_input(const std::string& name)
{
  const std::string fuzz = std::string(UNFOLD_FIXTURE_DIR) + "/../fuzz/";
  for (const std::string& path :
       {fuzz + "corpus/npy/regress_" + name, fuzz + "crashes/npy/" + name})
    if (std::ifstream(path).good())
      return path;
  FAIL("fuzz input " << name << " is in neither tests/fuzz/corpus/npy nor crashes/npy");
  return "";
}

template <class F>
double seconds_to_throw(F&& f)
{
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(f(), std::runtime_error);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("an empty .npy array with huge extents is rejected, not looped over", "[io][npy]")
{
  for (const char* name : {"matrix_zero_rows_huge_cols_loop.npy",
                           "found_zero_rows_2e9_cols_slow.npy",
                           "size_product_overflows_int64.npy",
                           "stack_of_empty_slices_reserve.npy"}) {
    INFO(name);
    const std::string path = find_input(name);
    CHECK(seconds_to_throw([&] { unfold::io::read_npy(path); }) < 1.0);
    CHECK(seconds_to_throw([&] { unfold::io::read_npy_matrix<double>(path); }) < 1.0);
    CHECK(seconds_to_throw([&] { unfold::io::read_npy_stack<double>(path); }) < 1.0);
  }
  CHECK_THROWS_WITH(unfold::io::read_npy(find_input("found_zero_rows_2e9_cols_slow.npy")),
                    Catch::Contains("is empty but has an extent of 2206302752"));
}
