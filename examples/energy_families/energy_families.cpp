// energy_families: every energy family of the library as a 12-step weight-tied unfolded stack
// on the same bundled State of the Union sentences.
//
// For each family it prints the mean energy per step, the mean drop E_0 - E_12, how many
// (sentence, step) pairs raised the energy beyond rounding, and the time; `--csv PATH` writes
// the mean normalised energy (E_t - E_12) / (E_0 - E_12) per step for plot.gp.
//
//   energy_families [--data DIR] [--steps L] [--scale C] [--csv PATH]

#include <unfold/io/glove.hpp>
#include <unfold/unfold.hpp>

#include <unfold/energy/crate.hpp>
#include <unfold/energy/energy_transformer.hpp>
#include <unfold/energy/hopfield.hpp>
#include <unfold/step/crate.hpp>
#include <unfold/step/energy_transformer.hpp>
#include <unfold/step/hopfield.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using unfold::Matrix;

struct Result {
  std::string family;
  std::vector<double> mean_energy;      // per layer end, t = 0..L
  std::vector<double> mean_normalised;  // (E_t - E_L) / (E_0 - E_L), averaged
  double mean_drop = 0;
  std::size_t increases = 0;
  double milliseconds = 0;
};

// Runs one family's stack on every sentence and summarises its trace.
template <class LayerT>
Result run_family(const std::string& family, const LayerT& layer,
                  const std::vector<Matrix<double>>& sentences, std::size_t steps)
{
  const auto stack = unfold::tied(layer, steps);
  Result result{family, std::vector<double>(steps + 1, 0.0),
                std::vector<double>(steps + 1, 0.0), 0, 0, 0};
  const auto start = std::chrono::steady_clock::now();
  for (const auto& tokens : sentences) {
    const auto trace = unfold::run(stack, tokens).trace;
    const auto ends = trace.layer_ends();
    const auto e = trace.layer_totals();
    const double range = e.front() - e.back();
    for (std::size_t t = 0; t <= steps; ++t) {
      result.mean_energy[t] += e[t] / double(sentences.size());
      const double normalised = range != 0 ? (e[t] - e.back()) / range : 0.0;
      result.mean_normalised[t] += normalised / double(sentences.size());
      if (t > 0 && trace.rose_between(ends[t - 1], ends[t]))
        ++result.increases;
    }
    result.mean_drop += range / double(sentences.size());
  }
  const auto stop = std::chrono::steady_clock::now();
  result.milliseconds = std::chrono::duration<double, std::milli>(stop - start).count();
  return result;
}

// h orthonormal blocks of width d / h, from seeded random projections.
std::vector<Matrix<double>> random_blocks(Eigen::Index d, Eigen::Index h, std::mt19937_64& rng)
{
  std::vector<Matrix<double>> projections;
  for (Eigen::Index i = 0; i < h; ++i)
    projections.push_back(unfold::normal_matrix<double>(d, d / h, 1.0, rng));
  return unfold::orthonormal_heads(projections).blocks;
}

}  // namespace

int main(int argc, char** argv)
try {
  std::string data = UNFOLD_DATA_DIR, csv;
  std::size_t steps = 12;
  double scale = 0.25;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--data")
      data = argv[i + 1];
    else if (flag == "--steps")
      steps = std::stoul(argv[i + 1]);
    else if (flag == "--scale")
      scale = std::stod(argv[i + 1]);
    else if (flag == "--csv")
      csv = argv[i + 1];
    else
      throw std::invalid_argument("energy_families: unknown option " + flag);
  }
  if (argc % 2 == 0)
    throw std::invalid_argument("energy_families: every option needs a value");

  // The same sentences for every family, scaled so that attention weights do not underflow.
  const auto vectors = unfold::io::WordVectors<double>::load(data + "/glove_sotu_100d.txt");
  std::vector<Matrix<double>> sentences;
  for (const auto& sentence : unfold::io::load_sentences(data + "/sotu_sentences.tsv")) {
    auto embedding = unfold::io::embed(vectors, sentence);
    if (embedding.covered > 0)
      sentences.push_back(scale * embedding.tokens);
  }
  const Eigen::Index d = vectors.dim();

  // Shared parameters: the paper's Xavier-normal weights, 4 heads of 25, random memories.
  const auto w = unfold::compat::PaperWeights<double>::xavier(d, 2022);
  std::mt19937_64 rng(7);
  const auto blocks = random_blocks(d, 4, rng);
  const unfold::FeedForwardEnergy<double> ffn(w.feedforward_weight(), w.b);
  const unfold::FeedForwardStep<double> ffn_relu(ffn, {1.0, true});
  const unfold::AttentionEnergy<double> exp_energy(w.W);

  std::vector<Result> results;
  results.push_back(run_family("paper consistent", unfold::compat::consistent_layer(w, true),
                               sentences, steps));
  results.push_back(
      run_family("paper authors", unfold::compat::authors_layer(w, true), sentences, steps));
  results.push_back(run_family(
      "log kernel",
      unfold::Layer(unfold::MMAttentionStep<double, unfold::LogKernel>(
                        unfold::AttentionEnergy<double, unfold::LogKernel>(w.W)),
                    ffn_relu),
      sentences, steps));
  results.push_back(run_family(
      "rational kernel",
      unfold::Layer(unfold::MMAttentionStep<double, unfold::RationalKernel>(
                        unfold::AttentionEnergy<double, unfold::RationalKernel>(w.W)),
                    ffn_relu),
      sentences, steps));
  results.push_back(run_family(
      "multi-head 4 x 25",
      unfold::Layer(unfold::MultiHeadMMStep<double>(unfold::MultiHeadAttentionEnergy<double>(
                        blocks)),
                    ffn_relu),
      sentences, steps));
  results.push_back(run_family("layer norm + MM",
                               unfold::Layer(unfold::ProjectionStep<double>(d),
                                             unfold::MMAttentionStep<double>(exp_energy),
                                             ffn_relu),
                               sentences, steps));
  results.push_back(run_family(
      "causal MM",
      unfold::Layer(unfold::CausalMMStep<double>(unfold::CausalAttentionEnergy<double>(w.W)),
                    ffn_relu),
      sentences, steps));
  results.push_back(run_family(
      "Strang (attention | FFN)",
      unfold::Layer(unfold::StrangStep(unfold::MMAttentionStep<double>(exp_energy, {0.5}),
                                       ffn_relu)),
      sentences, steps));
  results.push_back(run_family(
      "heavy ball MM + FFN",
      unfold::Layer(unfold::HeavyBallStep(unfold::MMAttentionStep<double>(exp_energy), 0.3),
                    ffn_relu),
      sentences, steps));

  // Hopfield: 64 stored patterns, the vectors of the 64 most frequent bundled words.
  Matrix<double> patterns(64, d);
  for (Eigen::Index i = 0; i < 64; ++i)
    patterns.row(i) = scale * vectors.row(vectors.words()[std::size_t(i)]);
  results.push_back(run_family(
      "modern Hopfield",
      unfold::Layer(unfold::HopfieldStep<double>(unfold::HopfieldEnergy<double>(patterns, 1.0))),
      sentences, steps));

  // Energy Transformer: 4 heads of 25 keys and queries, 64 memories, through a layer norm.
  std::vector<Matrix<double>> keys, queries;
  for (int h = 0; h < 4; ++h) {
    keys.push_back(unfold::normal_matrix<double>(d, 25, 0.1, rng));
    queries.push_back(unfold::normal_matrix<double>(d, 25, 0.1, rng));
  }
  const unfold::EnergyTransformerEnergy<double> et(
      unfold::LayerNormLagrangian<double>(d), keys, queries,
      unfold::normal_matrix<double>(64, d, 0.1, rng), 1.0);
  results.push_back(run_family(
      "Energy Transformer",
      unfold::Layer(unfold::EnergyTransformerStep<double>(et, {0.1})), sentences, steps));

  // CRATE: MSSA on the coding rate of 4 subspaces of 25.
  results.push_back(run_family(
      "CRATE (MSSA)",
      unfold::Layer(unfold::MSSAStep<double>(unfold::CodingRateEnergy<double>(blocks, 0.5),
                                             {0.5})),
      sentences, steps));

  std::printf("energy_families: %zu sentences, d = %td, %zu steps, tokens scaled by %g\n\n",
              sentences.size(), d, steps, scale);
  std::printf("%-26s %13s %13s %13s %10s %9s\n", "family", "mean E_0", "mean E_L",
              "mean drop", "increases", "time ms");
  for (const Result& r : results)
    std::printf("%-26s %13.6g %13.6g %13.6g %10zu %9.1f\n", r.family.c_str(),
                r.mean_energy.front(), r.mean_energy.back(), r.mean_drop, r.increases,
                r.milliseconds);
  std::printf("\nincreases: (sentence, step) pairs whose energy rose beyond rounding, of %zu\n",
              sentences.size() * steps);

  if (!csv.empty()) {
    std::ofstream out(csv);
    if (!out)
      throw std::runtime_error("energy_families: cannot write " + csv);
    out << "family,step,mean_energy,mean_normalised\n" << std::setprecision(10);
    for (const Result& r : results)
      for (std::size_t t = 0; t <= steps; ++t)
        out << r.family << ',' << t << ',' << r.mean_energy[t] << ','
            << r.mean_normalised[t] << '\n';
    std::printf("wrote %s\n", csv.c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
