// Tests of unfold/io/glove.hpp: the bundled real data, and the errors on malformed files.

#include <unfold/io/glove.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace {

const std::string data_dir = UNFOLD_DATA_DIR;
const std::string vectors_path = data_dir + "/glove_sotu_100d.txt";
const std::string sentences_path = data_dir + "/sotu_sentences.tsv";

// A directory of its own under the system temp directory, removed with its files.
class TempDir {
public:
  TempDir()
  {
    std::random_device seed;
    path_ = std::filesystem::temp_directory_path() /
            ("unfold_test_io_glove_" + std::to_string(seed()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir()
  {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string write(const std::string& name, const std::string& contents) const
  {
    const std::filesystem::path file = path_ / name;
    std::ofstream(file, std::ios::binary) << contents;
    return file.string();
  }

private:
  std::filesystem::path path_;
};

// Runs f, which must throw std::runtime_error, and returns the message.
template <class F>
std::string runtime_error_of(F&& f)
{
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  FAIL("no std::runtime_error was thrown");
  return {};
}

}  // namespace

TEMPLATE_TEST_CASE("the bundled GloVe vectors load with 100 components", "[io][glove]", float,
                   double)
{
  const auto glove = unfold::io::WordVectors<TestType>::load(vectors_path);
  CHECK(glove.dim() == 100);
  CHECK(glove.size() > 1000);
  CHECK(glove.words().size() == glove.size());
  CHECK(glove.contains(","));
  CHECK(glove.contains("."));
  CHECK_FALSE(glove.contains("The"));  // the vocabulary is lower-case

  REQUIRE(glove.contains("the"));
  const auto the = glove.row("the");
  REQUIRE(the.size() == 100);
  CHECK(the(0) == Approx(-0.038194));
  CHECK(the(1) == Approx(-0.24487));
  CHECK(the(2) == Approx(0.72812));
  CHECK(glove.words().front() == "the");  // most frequent first, as in GloVe

  CHECK_THROWS_AS(glove.row("no-such-word-in-the-bundle"), std::invalid_argument);
}

TEST_CASE("the bundled sentences are 240, 120 per era, with their labels", "[io][glove]")
{
  const auto sentences = unfold::io::load_sentences(sentences_path);
  REQUIRE(sentences.size() == 240);

  std::size_t pre = 0;
  std::size_t post = 0;
  for (const auto& s : sentences) {
    INFO("year " << s.year << ", era " << s.era);
    if (s.era == "pre1900") {
      ++pre;
      CHECK(s.year < 1900);
    } else {
      REQUIRE(s.era == "post1945");
      ++post;
      CHECK(s.year > 1945);
    }
    CHECK_FALSE(s.party.empty());
    CHECK(s.tokens.size() >= 8);
    CHECK(s.tokens.size() <= 40);
  }
  CHECK(pre == 120);
  CHECK(post == 120);
}

TEMPLATE_TEST_CASE("every bundled sentence has at least 90 % of its tokens embedded",
                   "[io][glove]", float, double)
{
  const auto glove = unfold::io::WordVectors<TestType>::load(vectors_path);
  const auto sentences = unfold::io::load_sentences(sentences_path);

  std::size_t total = 0;
  std::size_t covered = 0;
  for (const auto& s : sentences) {
    const auto e = unfold::io::embed(glove, s);
    INFO("sentence of " << s.year << ": " << e.covered << " of " << e.total << " tokens");
    CHECK(e.total == s.tokens.size());
    CHECK(e.coverage() >= 0.9);
    CHECK(e.tokens.rows() == static_cast<Eigen::Index>(e.covered));
    CHECK(e.tokens.cols() == 100);
    CHECK(e.tokens.allFinite());
    total += e.total;
    covered += e.covered;
  }
  INFO("covered " << covered << " of " << total << " tokens");
  CHECK(static_cast<double>(covered) / static_cast<double>(total) > 0.95);
}

TEMPLATE_TEST_CASE("embed keeps token order and skips words without a vector", "[io][glove]",
                   float, double)
{
  using Scalar = TestType;
  const TempDir dir;
  const auto glove = unfold::io::WordVectors<Scalar>::load(
      dir.write("v.txt", "a 1 2\nb 3 4\n"));
  CHECK(glove.size() == 2);
  CHECK(glove.dim() == 2);

  const unfold::io::Sentence s{2000, "none", "post1945", {"b", "x", "a", "b"}};
  const auto e = unfold::io::embed(glove, s);
  CHECK(e.total == 4);
  CHECK(e.covered == 3);
  CHECK(e.coverage() == Approx(0.75));
  REQUIRE(e.tokens.rows() == 3);
  REQUIRE(e.tokens.cols() == 2);
  CHECK(e.tokens(0, 0) == Scalar(3));
  CHECK(e.tokens(1, 0) == Scalar(1));
  CHECK(e.tokens(2, 1) == Scalar(4));

  const auto none = unfold::io::embed(glove, std::vector<std::string>{"x", "y"});
  CHECK(none.covered == 0);
  CHECK(none.tokens.rows() == 0);
  CHECK(none.tokens.cols() == 2);
  CHECK(none.coverage() == 0.0);
}

TEST_CASE("malformed GloVe files are rejected with the file and line", "[io][glove][errors]")
{
  using Vectors = unfold::io::WordVectors<double>;
  const TempDir dir;

  SECTION("a ragged dimension")
  {
    const auto path = dir.write("ragged.txt", "the 0.1 0.2 0.3\nof 0.4 0.5\n");
    const std::string message = runtime_error_of([&] { Vectors::load(path); });
    INFO(message);
    CHECK(message.find(path + ":2:") != std::string::npos);
    CHECK(message.find("expected 3") != std::string::npos);
  }
  SECTION("a non-numeric component")
  {
    const auto path = dir.write("text.txt", "the 0.1 0.2\nof 0.4 zero\n");
    const std::string message = runtime_error_of([&] { Vectors::load(path); });
    INFO(message);
    CHECK(message.find(path + ":2:") != std::string::npos);
    CHECK(message.find("\"zero\"") != std::string::npos);
  }
  SECTION("a number followed by garbage")
  {
    const auto path = dir.write("garbage.txt", "the 0.1 0.2x\n");
    CHECK(runtime_error_of([&] { Vectors::load(path); }).find(path + ":1:") !=
          std::string::npos);
  }
  SECTION("a non-finite component")
  {
    const auto path = dir.write("nan.txt", "the 0.1 0.2\nof nan 0.5\n");
    CHECK(runtime_error_of([&] { Vectors::load(path); }).find(path + ":2:") !=
          std::string::npos);
    const auto big = dir.write("big.txt", "the 1e999 0.2\n");
    CHECK(runtime_error_of([&] { Vectors::load(big); }).find(big + ":1:") !=
          std::string::npos);
  }
  SECTION("a word without components, an empty line, a repeated word")
  {
    const auto lonely = dir.write("lonely.txt", "the 0.1\nof\n");
    CHECK(runtime_error_of([&] { Vectors::load(lonely); }).find(":2:") != std::string::npos);
    const auto blank = dir.write("blank.txt", "the 0.1\n\nof 0.2\n");
    CHECK(runtime_error_of([&] { Vectors::load(blank); }).find(":2:") != std::string::npos);
    const auto twice = dir.write("twice.txt", "the 0.1\nof 0.2\nthe 0.3\n");
    const std::string message = runtime_error_of([&] { Vectors::load(twice); });
    INFO(message);
    CHECK(message.find(":3:") != std::string::npos);
    CHECK(message.find("repeats line 1") != std::string::npos);
  }
  SECTION("an empty file")
  {
    const auto path = dir.write("empty.txt", "");
    CHECK(runtime_error_of([&] { Vectors::load(path); }).find(path) != std::string::npos);
  }
  SECTION("a missing file")
  {
    const std::string path = data_dir + "/no_such_file.txt";
    const std::string message = runtime_error_of([&] { Vectors::load(path); });
    INFO(message);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find("cannot open") != std::string::npos);
  }
  SECTION("CRLF line ends are accepted")
  {
    const auto path = dir.write("crlf.txt", "the 0.5 -1\r\nof 2 3\r\n");
    const auto glove = unfold::io::WordVectors<float>::load(path);
    CHECK(glove.size() == 2);
    CHECK(glove.row("the")(1) == -1.0f);
  }
}

TEST_CASE("malformed sentence tables are rejected with the file and line",
          "[io][glove][errors]")
{
  const TempDir dir;
  const std::string header = "year\tparty\tera\ttokens\n";
  const auto error_of = [&](const std::string& name, const std::string& contents) {
    const auto path = dir.write(name, contents);
    return runtime_error_of([&] { unfold::io::load_sentences(path); });
  };

  SECTION("a well-formed table reads back")
  {
    const auto path = dir.write("ok.tsv", header + "1862\tRepublican\tpre1900\tthe union .\n");
    const auto sentences = unfold::io::load_sentences(path);
    REQUIRE(sentences.size() == 1);
    CHECK(sentences[0].year == 1862);
    CHECK(sentences[0].party == "Republican");
    CHECK(sentences[0].era == "pre1900");
    CHECK(sentences[0].tokens == std::vector<std::string>{"the", "union", "."});
  }
  SECTION("a wrong header")
  {
    const std::string message = error_of("header.tsv", "year party era tokens\n");
    INFO(message);
    CHECK(message.find(":1:") != std::string::npos);
    CHECK(message.find("header") != std::string::npos);
  }
  SECTION("a line with three fields")
  {
    const std::string message =
        error_of("fields.tsv", header + "1862\tRepublican\tpre1900\tthe union .\n"
                                        "1863\tRepublican the union .\n");
    INFO(message);
    CHECK(message.find(":3:") != std::string::npos);
    CHECK(message.find("expected 4") != std::string::npos);
  }
  SECTION("a year that is not an integer")
  {
    const std::string message = error_of("year.tsv", header + "1862a\tR\tpre1900\tthe\n");
    INFO(message);
    CHECK(message.find(":2:") != std::string::npos);
    CHECK(message.find("integer") != std::string::npos);
  }
  SECTION("empty tokens and empty labels")
  {
    CHECK(error_of("none.tsv", header + "1862\tR\tpre1900\t\n").find(":2:") !=
          std::string::npos);
    CHECK(error_of("double.tsv", header + "1862\tR\tpre1900\tthe  union\n").find(":2:") !=
          std::string::npos);
    CHECK(error_of("party.tsv", header + "1862\t\tpre1900\tthe\n").find(":2:") !=
          std::string::npos);
  }
  SECTION("an empty or missing file")
  {
    CHECK(error_of("empty.tsv", "").find("empty") != std::string::npos);
    const std::string path = data_dir + "/no_such_file.tsv";
    const std::string message =
        runtime_error_of([&] { unfold::io::load_sentences(path); });
    CHECK(message.find(path) != std::string::npos);
  }
}
