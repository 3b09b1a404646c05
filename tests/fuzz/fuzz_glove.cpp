// libFuzzer target for unfold::io::WordVectors<double>::load (GloVe text format).
//
// Any input must either load or throw std::runtime_error / std::invalid_argument; whatever
// loads must be self-consistent: one row of dim() finite values per word, in file order,
// every word findable, and embed() over the vocabulary giving back those rows.

#include "scratch_file.hpp"

#include <unfold/io/glove.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(const unfold::io::WordVectors<double>& vectors)
{
  using unfold_fuzz::require;
  require(vectors.size() > 0, "a loaded file has at least one word");
  require(vectors.dim() > 0, "a loaded file has at least one component per word");
  require(vectors.words().size() == vectors.size(), "words() has size() entries");

  for (const std::string& word : vectors.words()) {
    require(!word.empty(), "no word is empty");
    require(word.find(' ') == std::string::npos, "no word holds a space");
    require(vectors.contains(word), "every listed word is found");
    const auto row = vectors.row(word);
    require(row.size() == vectors.dim(), "every row has dim() entries");
    require(row.allFinite(), "every component is finite");
  }

  const auto embedding = unfold::io::embed(vectors, vectors.words());
  require(embedding.covered == vectors.size() && embedding.total == vectors.size(),
          "embedding the vocabulary covers every word");
  for (std::size_t i = 0; i < vectors.size(); ++i)
    require(embedding.tokens.row(static_cast<Eigen::Index>(i)) ==
                vectors.row(vectors.words()[i]),
            "embedding row i is the vector of word i");

  // A word that cannot be in the file (it holds a space) is absent, and row() refuses it.
  require(!vectors.contains("not a word"), "a word with spaces is never found");
  bool refused = false;
  try {
    (void)vectors.row("not a word");
  }
  catch (const std::invalid_argument&) {
    refused = true;
  }
  require(refused, "row() of an absent word throws std::invalid_argument");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  static const unfold_fuzz::ScratchFile scratch("glove");
  const std::string& path = scratch.write(data, size);
  try {
    check(unfold::io::WordVectors<double>::load(path));
  }
  catch (const std::runtime_error&) {
  }
  catch (const std::invalid_argument&) {
  }
  return 0;
}
