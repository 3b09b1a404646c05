// energy_curve: the energy of every layer of a weight-tied 12-layer unfolded Transformer on
// real sentences (the paper's Figure 5, on State of the Union sentences with GloVe vectors).
//
// For each variant of the model (consistent or the authors', with or without ReLU) and each
// layer t = 0..L it prints the distribution over sentences of E(Y_t) - E_min, where E_min is
// the smallest energy over all layers and sentences of that variant, and the number of
// sentences whose energy rose at that layer.
//
//   energy_curve [--data DIR] [--layers L] [--seed S] [--scale C] [--csv PATH]

#include <unfold/io/glove.hpp>
#include <unfold/unfold.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string data = UNFOLD_DATA_DIR;
  std::size_t layers = 12;
  std::uint64_t seed = 2022;
  double scale = 1.0;
  std::string csv;
};

Options parse(int argc, char** argv)
{
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << "usage: energy_curve [--data DIR] [--layers L] [--seed S] [--scale C] "
                   "[--csv PATH]\n";
      std::exit(0);
    }
    if (i + 1 >= argc)
      throw std::invalid_argument("energy_curve: " + flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--data")
      options.data = value;
    else if (flag == "--layers")
      options.layers = std::stoul(value);
    else if (flag == "--seed")
      options.seed = std::stoull(value);
    else if (flag == "--scale")
      options.scale = std::stod(value);
    else if (flag == "--csv")
      options.csv = value;
    else
      throw std::invalid_argument("energy_curve: unknown option " + flag);
  }
  if (options.layers < 1)
    throw std::invalid_argument("energy_curve: --layers must be >= 1");
  if (!(options.scale > 0))
    throw std::invalid_argument("energy_curve: --scale must be > 0");
  return options;
}

// Quantile with linear interpolation between order statistics (R's type 7).
double quantile(std::vector<double> values, double p)
{
  std::sort(values.begin(), values.end());
  const double position = p * double(values.size() - 1);
  const std::size_t below = std::size_t(position);
  const std::size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (position - double(below)) * (values[above] - values[below]);
}

struct Row {
  std::size_t layer;
  double mean, min, q1, median, q3, max;
  std::size_t increases;
};

struct Curve {
  std::string variant;
  bool relu;
  double energy_min;
  std::size_t sentences_with_increase;
  std::vector<Row> rows;
};

// Runs one variant on every sentence and summarises E(Y_t) - E_min per layer.
template <class LayerT>
Curve energy_curve(const std::string& variant, bool relu, const LayerT& layer,
                   const std::vector<unfold::Matrix<double>>& sentences, std::size_t depth)
{
  const auto stack = unfold::Stack<LayerT>::tied(layer, depth);
  std::vector<std::vector<double>> energies;  // [sentence][layer]
  std::vector<std::vector<bool>> rose;        // [sentence][layer], beyond rounding
  for (const auto& tokens : sentences) {
    const auto trace = unfold::run(stack, tokens).trace;
    const auto ends = trace.layer_ends();
    energies.push_back(trace.layer_totals());
    rose.emplace_back(ends.size(), false);
    for (std::size_t t = 1; t < ends.size(); ++t)
      rose.back()[t] = trace.rose_between(ends[t - 1], ends[t]);
  }

  Curve curve{variant, relu, energies[0][0], 0, {}};
  for (std::size_t s = 0; s < energies.size(); ++s) {
    const auto& e = energies[s];
    curve.energy_min = std::min(curve.energy_min, *std::min_element(e.begin(), e.end()));
    const bool any = std::find(rose[s].begin(), rose[s].end(), true) != rose[s].end();
    curve.sentences_with_increase += any ? 1 : 0;
  }

  for (std::size_t t = 0; t <= depth; ++t) {
    std::vector<double> gap;
    std::size_t increases = 0;
    for (std::size_t s = 0; s < energies.size(); ++s) {
      gap.push_back(energies[s][t] - curve.energy_min);
      increases += rose[s][t] ? 1 : 0;
    }
    double mean = 0;
    for (double g : gap)
      mean += g / double(gap.size());
    curve.rows.push_back({t, mean, quantile(gap, 0), quantile(gap, 0.25), quantile(gap, 0.5),
                          quantile(gap, 0.75), quantile(gap, 1), increases});
  }
  return curve;
}

void print(const Curve& curve, std::size_t sentences)
{
  std::cout << "\nvariant " << curve.variant << ", relu " << curve.relu << ": E_min = "
            << std::setprecision(6) << curve.energy_min << ", sentences with any increase: "
            << curve.sentences_with_increase << " of " << sentences << "\n";
  std::cout << "layer        mean         min          q1      median          q3         max"
               "  increases\n";
  for (const Row& r : curve.rows) {
    std::cout << std::setw(5) << r.layer << std::scientific << std::setprecision(4);
    for (double v : {r.mean, r.min, r.q1, r.median, r.q3, r.max})
      std::cout << std::setw(12) << v;
    std::cout << std::defaultfloat << std::setw(11) << r.increases << "\n";
  }
}

void write_csv(const std::string& path, const std::vector<Curve>& curves)
{
  std::ofstream out(path);
  if (!out)
    throw std::runtime_error("energy_curve: cannot write " + path);
  out << "variant,relu,layer,mean,min,q1,median,q3,max,increases\n";
  out << std::setprecision(10);
  for (const Curve& c : curves)
    for (const Row& r : c.rows)
      out << c.variant << ',' << int(c.relu) << ',' << r.layer << ',' << r.mean << ',' << r.min
          << ',' << r.q1 << ',' << r.median << ',' << r.q3 << ',' << r.max << ','
          << r.increases << '\n';
}

}  // namespace

int main(int argc, char** argv)
try {
  const Options options = parse(argc, argv);

  // Embed every sentence: one GloVe row per token that has a vector.
  const auto vectors =
      unfold::io::WordVectors<double>::load(options.data + "/glove_sotu_100d.txt");
  const auto sentences = unfold::io::load_sentences(options.data + "/sotu_sentences.tsv");
  std::vector<unfold::Matrix<double>> tokens;
  std::size_t total = 0, covered = 0;
  for (const auto& sentence : sentences) {
    auto embedding = unfold::io::embed(vectors, sentence);
    total += embedding.total;
    covered += embedding.covered;
    if (embedding.covered > 0)
      tokens.push_back(options.scale * embedding.tokens);
  }

  const Eigen::Index d = vectors.dim();
  std::cout << "energy_curve: " << tokens.size() << " sentences, " << covered << " of " << total
            << " tokens have a vector (" << std::fixed << std::setprecision(1)
            << 100.0 * double(covered) / double(total) << " %), d = " << d << ", "
            << options.layers << " weight-tied layers, seed " << options.seed << ", scale "
            << options.scale << std::defaultfloat << "\n";

  // One set of Xavier-normal weights, shared by all four variants.
  const auto weights = unfold::compat::PaperWeights<double>::xavier(d, options.seed);
  std::vector<Curve> curves;
  for (bool relu : {false, true}) {
    curves.push_back(energy_curve("consistent", relu,
                                  unfold::compat::consistent_layer(weights, relu), tokens,
                                  options.layers));
    curves.push_back(energy_curve("authors", relu, unfold::compat::authors_layer(weights, relu),
                                  tokens, options.layers));
  }

  for (const Curve& c : curves)
    print(c, tokens.size());
  if (!options.csv.empty()) {
    write_csv(options.csv, curves);
    std::cout << "\nwrote " << options.csv << "\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
