#include "unfold/io/npy.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

using unfold::io::NpyArray;
using unfold::io::NpyType;
using unfold::io::read_npy;
using unfold::io::read_npy_matrix;
using unfold::io::read_npy_stack;
using unfold::io::write_npy;
using Catch::Matchers::Contains;

template <class T>
using MatrixOf = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

// A scratch directory removed when the test case ends.
struct ScratchDir {
  std::filesystem::path path;

  ScratchDir()
  {
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path = std::filesystem::temp_directory_path() / ("unfold_test_io_npy_" + std::to_string(stamp));
    std::filesystem::create_directories(path);
  }

  ~ScratchDir() { std::filesystem::remove_all(path); }

  [[nodiscard]] std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string fixture_path(const std::string& name, const std::string& file)
{
  return std::string(UNFOLD_FIXTURE_DIR) + "/" + name + "/" + file + ".npy";
}

// The bytes of a .npy file written by hand: preamble of the given version, the header padded
// with spaces and a newline, then the data.
std::vector<unsigned char> hand_npy(int major, const std::string& dict,
                                    const std::vector<unsigned char>& data)
{
  const std::size_t preamble = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (preamble + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::vector<unsigned char> bytes = {0x93, 'N', 'U', 'M', 'P', 'Y',
                                      static_cast<unsigned char>(major), 0};
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  for (std::size_t k = 0; k < length_bytes; ++k)
    bytes.push_back(static_cast<unsigned char>((header.size() >> (8 * k)) & 0xff));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

template <class T>
std::vector<unsigned char> little_endian(const std::vector<T>& values)
{
  // Sized first and filled with memcpy: GCC 12 at -O3 warns (falsely) on insert here.
  std::vector<unsigned char> out(values.size() * sizeof(T));
  for (std::size_t i = 0; i < values.size(); ++i)
    std::memcpy(out.data() + i * sizeof(T), &values[i], sizeof(T));
  return out;
}

void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes)
{
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace

TEMPLATE_TEST_CASE("write_npy and read_npy_matrix round-trip a matrix", "[io][npy]", float,
                   double, std::int64_t)
{
  const ScratchDir dir;
  MatrixOf<TestType> m(3, 2);
  m << 1, -2, 3, 4, 5, -6;
  if constexpr (!std::is_same_v<TestType, std::int64_t>)
    m(0, 0) = TestType(0.1);
  write_npy(dir.file("m.npy"), m);

  const NpyArray raw = read_npy(dir.file("m.npy"));
  REQUIRE(raw.shape == std::vector<std::int64_t>{3, 2});
  REQUIRE_FALSE(raw.fortran_order);
  REQUIRE(read_npy_matrix<TestType>(dir.file("m.npy")) == m);

  // A single row written as a vector comes back as a 1 x n row.
  const MatrixOf<TestType> row = m.col(1).transpose();
  write_npy(dir.file("v.npy"), row, true);
  REQUIRE(read_npy(dir.file("v.npy")).shape == std::vector<std::int64_t>{3});
  REQUIRE(read_npy_matrix<TestType>(dir.file("v.npy")) == row);
  REQUIRE_THROWS_WITH(write_npy(dir.file("bad.npy"), m, true),
                      Contains("bad.npy") && Contains("as_vector needs one row"));
}

TEST_CASE("write_npy and read_npy_matrix round-trip a boolean mask", "[io][npy]")
{
  const ScratchDir dir;
  MatrixOf<bool> mask(2, 3);
  mask << true, false, false, false, true, true;
  write_npy(dir.file("mask.npy"), mask);
  REQUIRE(read_npy(dir.file("mask.npy")).type == NpyType::boolean);
  REQUIRE(read_npy_matrix<bool>(dir.file("mask.npy")) == mask);
}

TEST_CASE("write_npy pads the header so the data starts at a multiple of 64 bytes",
          "[io][npy]")
{
  const ScratchDir dir;
  write_npy(dir.file("m.npy"), Eigen::MatrixXd::Ones(2, 5));
  const auto size = std::filesystem::file_size(dir.file("m.npy"));
  REQUIRE((size - 2 * 5 * 8) % 64 == 0);

  NpyArray scalar;
  scalar.type = NpyType::int64;
  scalar.data = little_endian<std::int64_t>({42});
  write_npy(dir.file("s.npy"), scalar);
  REQUIRE(read_npy(dir.file("s.npy")).shape.empty());
  REQUIRE(read_npy_matrix<std::int64_t>(dir.file("s.npy"))(0, 0) == 42);
}

TEST_CASE("read_npy reads the PyTorch fixtures of every kind", "[io][npy][fixture]")
{
  // 0-d int64, 1-d float64, 2-d and 1-d booleans, 3-d float32.
  REQUIRE(read_npy_matrix<std::int64_t>(fixture_path("mha_self_h4_nobias", "heads"))(0, 0) == 4);
  const Eigen::MatrixXd bias = read_npy_matrix<double>(fixture_path("mha_self_h1_bias",
                                                                    "in_proj_bias"));
  REQUIRE(bias.rows() == 1);
  REQUIRE(bias.cols() == 12);

  const MatrixOf<bool> causal = read_npy_matrix<bool>(fixture_path("mha_causal_h2",
                                                                   "attn_mask"));
  REQUIRE(causal.rows() == 6);
  for (Eigen::Index i = 0; i < 6; ++i)
    for (Eigen::Index j = 0; j < 6; ++j)
      REQUIRE(causal(i, j) == (j > i));
  const MatrixOf<bool> padding = read_npy_matrix<bool>(fixture_path("mha_kpm_h2",
                                                                    "key_padding_mask"));
  MatrixOf<bool> expected(1, 5);
  expected << false, true, false, true, false;
  REQUIRE(padding == expected);

  const auto heads = read_npy_stack<float>(fixture_path("mha_self_h4_nobias", "head_weights_f32"));
  REQUIRE(heads.size() == 4);
  REQUIRE(heads[0].rows() == 5);
  REQUIRE(heads[0].cols() == 5);
  REQUIRE((heads[2].rowwise().sum().array() - 1.0f).abs().maxCoeff() <= 1e-6f);
}

TEST_CASE("read_npy handles Fortran order, format 2.0 and dtype conversion", "[io][npy]")
{
  const ScratchDir dir;
  Eigen::MatrixXd expected(2, 3);
  expected << 1, 2, 3, 4, 5, 6;

  write_bytes(dir.file("c.npy"),
              hand_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
                       little_endian<double>({1, 2, 3, 4, 5, 6})));
  write_bytes(dir.file("f.npy"),
              hand_npy(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                       little_endian<double>({1, 4, 2, 5, 3, 6})));
  write_bytes(dir.file("v2.npy"),
              hand_npy(2, "{\"descr\": \"<f4\", \"shape\": (2,3), \"fortran_order\": False}",
                       little_endian<float>({1, 2, 3, 4, 5, 6})));
  REQUIRE(read_npy_matrix<double>(dir.file("c.npy")) == expected);
  REQUIRE(read_npy_matrix<double>(dir.file("f.npy")) == expected);
  REQUIRE(read_npy_matrix<double>(dir.file("v2.npy")) == expected);
  REQUIRE(read_npy_matrix<float>(dir.file("c.npy")) == expected.cast<float>());

  // A 3-d array (2, 2, 3): slice s holds 6 s + the C-order position.
  std::vector<double> c_order(12);
  std::vector<double> f_order(12);
  for (int s = 0; s < 2; ++s)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        const double value = 6 * s + 3 * i + j;
        c_order[std::size_t((s * 2 + i) * 3 + j)] = value;
        f_order[std::size_t(s + 2 * (i + 2 * j))] = value;
      }
  write_bytes(dir.file("c3.npy"),
              hand_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2, 3), }",
                       little_endian(c_order)));
  write_bytes(dir.file("f3.npy"),
              hand_npy(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2, 3), }",
                       little_endian(f_order)));
  const auto c3 = read_npy_stack<double>(dir.file("c3.npy"));
  const auto f3 = read_npy_stack<double>(dir.file("f3.npy"));
  REQUIRE(c3.size() == 2);
  REQUIRE(c3[0] == (expected.array() - 1).matrix());
  REQUIRE(c3[1] == (expected.array() + 5).matrix());
  REQUIRE(f3[0] == c3[0]);
  REQUIRE(f3[1] == c3[1]);

  // Integers read as floating point; an empty array reads as 0 columns.
  write_bytes(dir.file("i.npy"),
              hand_npy(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                       little_endian<std::int64_t>({-1, 0, 7})));
  REQUIRE(read_npy_matrix<double>(dir.file("i.npy")) == Eigen::RowVector3d(-1, 0, 7));
  write_bytes(dir.file("e.npy"),
              hand_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (0,), }", {}));
  REQUIRE(read_npy_matrix<double>(dir.file("e.npy")).size() == 0);
}

TEST_CASE("read_npy rejects malformed files with a std::runtime_error naming the file",
          "[io][npy][errors]")
{
  const ScratchDir dir;
  const std::string good_dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
  const auto four = little_endian<double>({1, 2, 3, 4});

  const auto rejects = [&](const std::string& name, const std::vector<unsigned char>& bytes,
                           const std::string& reason) {
    INFO(name);
    write_bytes(dir.file(name), bytes);
    REQUIRE_THROWS_AS(read_npy(dir.file(name)), std::runtime_error);
    REQUIRE_THROWS_WITH(read_npy(dir.file(name)), Contains(dir.file(name)) && Contains(reason));
  };

  SECTION("the file is missing")
  {
    REQUIRE_THROWS_WITH(read_npy(dir.file("missing.npy")),
                        Contains("missing.npy") && Contains("cannot open"));
  }

  SECTION("bad magic and unsupported versions")
  {
    auto bytes = hand_npy(1, good_dict, four);
    bytes[1] = 'X';
    rejects("magic.npy", bytes, "bad magic");
    rejects("short.npy", {0x93, 'N', 'U'}, "bad magic");
    bytes = hand_npy(1, good_dict, four);
    bytes[6] = 3;
    rejects("version.npy", bytes, "unsupported format version 3.0");
  }

  SECTION("truncated header or data, and surplus data")
  {
    auto bytes = hand_npy(1, good_dict, four);
    rejects("header.npy", std::vector<unsigned char>(bytes.begin(), bytes.begin() + 40),
            "truncated header");
    rejects("data.npy", std::vector<unsigned char>(bytes.begin(), bytes.end() - 3),
            "truncated data: 32 bytes expected, 29 present");
    bytes.push_back(0);
    rejects("surplus.npy", bytes, "1 bytes after the data");
  }

  SECTION("unsupported dtypes")
  {
    rejects("big.npy",
            hand_npy(1, "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2), }", four),
            "unsupported dtype '>f8'");
    rejects("half.npy",
            hand_npy(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }", four),
            "unsupported dtype '<f2'");
    rejects("complex.npy",
            hand_npy(1, "{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }", four),
            "unsupported dtype '<c16'");
  }

  SECTION("headers that do not parse")
  {
    rejects("nokey.npy", hand_npy(1, "{'descr': '<f8', 'fortran_order': False, }", four),
            "lacks one of");
    rejects("extra.npy",
            hand_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), 'x': 1}",
                     four),
            "unexpected header key 'x'");
    rejects("tuple.npy",
            hand_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, -2), }", four),
            "non-negative integer");
    rejects("order.npy",
            hand_npy(1, "{'descr': '<f8', 'fortran_order': 0, 'shape': (2, 2), }", four),
            "expected True or False");
    rejects("brace.npy", hand_npy(1, "'descr': '<f8'", four), "expected '{'");
    rejects("dims.npy",
            hand_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 2, 2), }",
                     four),
            "has 4 dimensions, expected 0 to 3");
  }

  SECTION("a boolean byte other than 0 or 1")
  {
    rejects("bool.npy",
            hand_npy(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", {0, 2, 1}),
            "boolean data holds the byte 2");
  }
}

TEST_CASE("read_npy_matrix and read_npy_stack check dimensions and element types",
          "[io][npy][errors]")
{
  const ScratchDir dir;
  write_npy(dir.file("m.npy"), Eigen::MatrixXd::Ones(2, 2));
  MatrixOf<bool> mask = MatrixOf<bool>::Constant(2, 2, true);
  write_npy(dir.file("b.npy"), mask);
  const std::string stack = fixture_path("mha_self_h4_nobias", "head_weights_f64");

  REQUIRE_THROWS_WITH(read_npy_matrix<double>(stack),
                      Contains("head_weights_f64.npy") &&
                          Contains("has 3 dimensions, expected 0 to 2"));
  REQUIRE_THROWS_WITH(read_npy_stack<double>(dir.file("m.npy")),
                      Contains("m.npy") && Contains("expected 3 for a stack"));
  REQUIRE_THROWS_WITH(read_npy_matrix<float>(dir.file("b.npy")),
                      Contains("b.npy") && Contains("dtype '|b1' cannot be read"));
  REQUIRE_THROWS_WITH(read_npy_matrix<bool>(dir.file("m.npy")),
                      Contains("dtype '<f8' cannot be read"));
  REQUIRE_THROWS_WITH(read_npy_matrix<std::int64_t>(dir.file("m.npy")),
                      Contains("dtype '<f8' cannot be read"));
  REQUIRE_THROWS_WITH(write_npy(dir.path.string() + "/no/such/dir/x.npy", mask),
                      Contains("x.npy") && Contains("cannot open the file for writing"));
}
