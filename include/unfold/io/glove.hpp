#pragma once

/// \file
/// Readers for the real data of the examples: word vectors in GloVe's text format, the
/// State of the Union sentences of `examples/data/sotu_sentences.tsv`, and the token matrix
/// of a sentence (one row per token that has a vector).
///
/// Every reader throws `std::runtime_error` with a message "who: file:line: what was wrong"
/// on a file that cannot be opened or does not follow its format. The formats are described
/// in `examples/data/README.md`.

#include "../core/types.hpp"

#include <Eigen/Core>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace unfold::io {

namespace detail {

[[noreturn]] inline void fail_file(std::string_view who, const std::string& path,
                                   std::string_view what)
{
  std::string message(who);
  message += ": ";
  message += path;
  message += ": ";
  message += what;
  throw std::runtime_error(message);
}

[[noreturn]] inline void fail_line(std::string_view who, const std::string& path,
                                   std::size_t line, std::string_view what)
{
  std::string message(who);
  message += ": ";
  message += path;
  message += ":";
  message += std::to_string(line);
  message += ": ";
  message += what;
  throw std::runtime_error(message);
}

/// Drops trailing carriage returns and spaces, so CRLF files read like LF files.
inline std::string_view trim_end(std::string_view text)
{
  while (!text.empty() && (text.back() == '\r' || text.back() == ' '))
    text.remove_suffix(1);
  return text;
}

/// Splits at every `sep`; empty fields are kept, so that a doubled separator is visible.
inline std::vector<std::string_view> split(std::string_view text, char sep)
{
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find(sep, start);
    if (end == std::string_view::npos) {
      fields.push_back(text.substr(start));
      return fields;
    }
    fields.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

/// Shows a field in a message, quoted and cut to a readable length.
inline std::string quoted(std::string_view field)
{
  constexpr std::size_t shown = 40;
  std::string out = "\"";
  out += field.substr(0, shown);
  if (field.size() > shown)
    out += "...";
  out += "\"";
  return out;
}

/// Parses the whole field as a number; false if it is not one or does not fit in T.
template <class T>
bool parse_number(std::string_view field, T& value)
{
  const char* const first = field.data();
  const char* const last = first + field.size();
  const auto [end, error] = std::from_chars(first, last, value);
  return !field.empty() && error == std::errc() && end == last;
}

}  // namespace detail

/// Word vectors read from GloVe's text format: one word per line, then its d components,
/// all separated by single spaces (`the -0.038194 -0.24487 0.72812 ...`).
///
/// The vectors are kept in file order as the rows of a size() x dim() matrix.
///
/// \tparam Scalar float or double; the components are rounded to it when read.
///
/// \code
/// const auto glove = unfold::io::WordVectors<double>::load("glove_sotu_100d.txt");
/// if (glove.contains("union"))
///   std::cout << glove.row("union").norm() << "\n";
/// \endcode
///
/// \warning A word2vec-style header line ("400000 100") is not part of the format and is
///          reported as a dimension mismatch on line 2.
template <Real Scalar_>
class WordVectors {
  using RowMajor = Eigen::Matrix<Scalar_, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

public:
  using Scalar = Scalar_;

  /// An empty vocabulary: size() == 0 and dim() == 0.
  WordVectors() = default;

  /// Reads a GloVe text file.
  ///
  /// \param path In: the file to read.
  /// \return The vectors, in file order.
  /// \throws std::runtime_error naming the file (and the line) if the file cannot be read
  ///         or is empty, or a line is empty, starts with a space, has no components, has a
  ///         different number of components than line 1, has a component that is not a
  ///         finite number representable as Scalar, or repeats a word of an earlier line.
  static WordVectors load(const std::string& path)
  {
    constexpr std::string_view who = "unfold::io::WordVectors::load";
    std::ifstream in(path, std::ios::binary);
    if (!in)
      detail::fail_file(who, path, "cannot open the file");

    WordVectors result;
    std::vector<Scalar> values;  // row-major, dim() values per word
    std::string buffer;
    std::size_t line = 0;
    while (std::getline(in, buffer)) {
      ++line;
      const std::string_view text = detail::trim_end(buffer);
      if (text.empty())
        detail::fail_line(who, path, line, "empty line, expected a word and its components");
      const std::vector<std::string_view> fields = detail::split(text, ' ');
      if (fields[0].empty())
        detail::fail_line(who, path, line, "the line starts with a space, expected a word");
      if (fields.size() == 1)
        detail::fail_line(who, path, line, "word " + detail::quoted(fields[0]) +
                                               " has no components");

      // The first line fixes d; every other line must have the same d components.
      const std::size_t d = fields.size() - 1;
      if (line == 1) {
        result.dim_ = static_cast<Eigen::Index>(d);
      } else if (d != static_cast<std::size_t>(result.dim_)) {
        detail::fail_line(who, path, line,
                          "word " + detail::quoted(fields[0]) + " has " + std::to_string(d) +
                              " components, expected " + std::to_string(result.dim_) +
                              " as on line 1");
      }

      for (std::size_t k = 1; k < fields.size(); ++k) {
        Scalar value{};
        if (!detail::parse_number(fields[k], value) || !std::isfinite(value))
          detail::fail_line(who, path, line,
                            "component " + std::to_string(k) + " of word " +
                                detail::quoted(fields[0]) + " is " + detail::quoted(fields[k]) +
                                ", expected a finite number");
        values.push_back(value);
      }

      const std::string word(fields[0]);
      const auto [at, inserted] = result.index_.emplace(word, result.words_.size());
      if (!inserted)
        detail::fail_line(who, path, line,
                          "word " + detail::quoted(word) + " repeats line " +
                              std::to_string(at->second + 1));
      result.words_.push_back(word);
    }
    if (in.bad())
      detail::fail_file(who, path, "read error after line " + std::to_string(line));
    if (line == 0)
      detail::fail_file(who, path, "the file is empty, expected one word vector per line");

    result.vectors_ = Eigen::Map<const RowMajor>(
        values.data(), static_cast<Eigen::Index>(result.words_.size()), result.dim_);
    return result;
  }

  /// The number of components d of every vector.
  Eigen::Index dim() const { return dim_; }

  /// The number of words.
  std::size_t size() const { return words_.size(); }

  /// True if `word` has a vector. Words are compared exactly (the bundled file is lower-case).
  bool contains(const std::string& word) const { return index_.find(word) != index_.end(); }

  /// The 1 x d vector of `word`, a view into this object: valid while it lives.
  ///
  /// \throws std::invalid_argument if the word has no vector; test with contains() first.
  Eigen::Map<const RowVector<Scalar>> row(const std::string& word) const
  {
    const auto at = index_.find(word);
    if (at == index_.end())
      throw std::invalid_argument("unfold::io::WordVectors::row: word " +
                                  detail::quoted(word) + " has no vector");
    const auto i = static_cast<Eigen::Index>(at->second);
    return Eigen::Map<const RowVector<Scalar>>(vectors_.data() + i * dim_, dim_);
  }

  /// The words in file order; word i has row i.
  const std::vector<std::string>& words() const { return words_; }

private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, std::size_t> index_;
  RowMajor vectors_;
  Eigen::Index dim_ = 0;
};

/// One tokenised sentence of `sotu_sentences.tsv` and the labels of its address.
struct Sentence {
  int year;                         ///< Year of the address, e.g. 1862.
  std::string party;                ///< Party of the president, e.g. "Republican" or "none".
  std::string era;                  ///< "pre1900" or "post1945" ("1900to1945" in --all data).
  std::vector<std::string> tokens;  ///< Lower-case word and punctuation tokens, never empty.
};

/// Reads the sentence table: a header line `year<TAB>party<TAB>era<TAB>tokens`, then one
/// sentence per line with its tokens separated by single spaces.
///
/// \param path In: the file to read.
/// \return The sentences, in file order.
/// \throws std::runtime_error naming the file (and the line) if the file cannot be read,
///         the header differs, a line does not have 4 tab-separated fields, the year is not
///         an integer, the party or era is empty, or the tokens are empty or contain an
///         empty token (a doubled, leading or trailing space).
inline std::vector<Sentence> load_sentences(const std::string& path)
{
  constexpr std::string_view who = "unfold::io::load_sentences";
  constexpr std::string_view header = "year\tparty\tera\ttokens";
  std::ifstream in(path, std::ios::binary);
  if (!in)
    detail::fail_file(who, path, "cannot open the file");

  std::vector<Sentence> sentences;
  std::string buffer;
  std::size_t line = 0;
  while (std::getline(in, buffer)) {
    ++line;
    std::string_view text = buffer;
    if (!text.empty() && text.back() == '\r')
      text.remove_suffix(1);
    if (line == 1) {
      if (text != header)
        detail::fail_line(who, path, line,
                          "the header is " + detail::quoted(text) +
                              ", expected \"year<TAB>party<TAB>era<TAB>tokens\"");
      continue;
    }

    const std::vector<std::string_view> fields = detail::split(text, '\t');
    if (fields.size() != 4)
      detail::fail_line(who, path, line,
                        "the line has " + std::to_string(fields.size()) +
                            " tab-separated fields, expected 4 (year, party, era, tokens)");
    Sentence sentence{};
    if (!detail::parse_number(fields[0], sentence.year))
      detail::fail_line(who, path, line,
                        "the year is " + detail::quoted(fields[0]) + ", expected an integer");
    if (fields[1].empty() || fields[2].empty())
      detail::fail_line(who, path, line, "the party or the era is empty");
    sentence.party = fields[1];
    sentence.era = fields[2];
    if (fields[3].empty())
      detail::fail_line(who, path, line, "the sentence has no tokens");
    for (const std::string_view token : detail::split(fields[3], ' ')) {
      if (token.empty())
        detail::fail_line(who, path, line,
                          "empty token (a doubled, leading or trailing space in the tokens)");
      sentence.tokens.emplace_back(token);
    }
    sentences.push_back(std::move(sentence));
  }
  if (in.bad())
    detail::fail_file(who, path, "read error after line " + std::to_string(line));
  if (line == 0)
    detail::fail_file(who, path, "the file is empty, expected the header line");
  return sentences;
}

/// The token matrix of a sentence and how much of the sentence it covers.
///
/// \tparam Scalar float or double.
template <Real Scalar>
struct Embedding {
  Matrix<Scalar> tokens;    ///< n x d, one row per covered token, in sentence order.
  std::size_t total = 0;    ///< Tokens in the sentence.
  std::size_t covered = 0;  ///< Tokens with a vector, n = tokens.rows().

  /// covered / total, or 0 for a sentence without tokens.
  double coverage() const
  {
    return total == 0 ? 0.0 : static_cast<double>(covered) / static_cast<double>(total);
  }
};

/// Stacks the vectors of the tokens that have one, skipping the others.
///
/// \param vectors In: the word vectors, of width d.
/// \param tokens In: the tokens, looked up exactly as written.
/// \return n x d rows in token order, with n = covered; 0 x d if no token has a vector.
template <Real Scalar>
Embedding<Scalar> embed(const WordVectors<Scalar>& vectors, const std::vector<std::string>& tokens)
{
  Embedding<Scalar> result;
  result.total = tokens.size();
  for (const std::string& token : tokens)
    result.covered += vectors.contains(token) ? 1 : 0;

  result.tokens.resize(static_cast<Eigen::Index>(result.covered), vectors.dim());
  Eigen::Index i = 0;
  for (const std::string& token : tokens)
    if (vectors.contains(token))
      result.tokens.row(i++) = vectors.row(token);
  return result;
}

/// Stacks the vectors of the sentence's tokens that have one; see the overload above.
template <Real Scalar>
Embedding<Scalar> embed(const WordVectors<Scalar>& vectors, const Sentence& sentence)
{
  return embed(vectors, sentence.tokens);
}

}  // namespace unfold::io
