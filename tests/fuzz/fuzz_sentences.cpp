// libFuzzer target for unfold::io::load_sentences (the tab-separated sentence table).
//
// Any input must either load or throw std::runtime_error / std::invalid_argument; whatever
// loads must keep the documented promises: a non-empty party and era, and a non-empty list
// of non-empty tokens without spaces, tabs or line ends.

#include "scratch_file.hpp"

#include <unfold/io/glove.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

bool plain(const std::string& field)
{
  return field.find_first_of("\t\n") == std::string::npos;
}

void check(const std::vector<unfold::io::Sentence>& sentences, std::size_t size)
{
  using unfold_fuzz::require;
  // The header is 22 bytes and every sentence line takes at least 8 ("1\ta\tb\tc\n" less one).
  require(sentences.size() <= size / 8 + 1, "no more sentences than the input has lines");
  for (const unfold::io::Sentence& sentence : sentences) {
    require(!sentence.party.empty() && plain(sentence.party), "the party is a non-empty field");
    require(!sentence.era.empty() && plain(sentence.era), "the era is a non-empty field");
    require(!sentence.tokens.empty(), "a sentence has tokens");
    for (const std::string& token : sentence.tokens)
      require(!token.empty() && plain(token) && token.find(' ') == std::string::npos,
              "a token is non-empty and holds no separator");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  static const unfold_fuzz::ScratchFile scratch("sentences");
  const std::string& path = scratch.write(data, size);
  try {
    check(unfold::io::load_sentences(path), size);
  }
  catch (const std::runtime_error&) {
  }
  catch (const std::invalid_argument&) {
  }
  return 0;
}
