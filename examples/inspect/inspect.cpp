// unfold-inspect: how far a PyTorch TransformerEncoderLayer is from an energy-descent layer, the
// nearest such layer, and the energy trace of a weight-tied stack of it.
//
// Input: a folder of .npy files as tests/fixtures/make_fixtures.py writes them (PyTorch's
// parameter names with '.' written '_', under the prefix "layer<l>_", plus heads.npy and,
// when present, activation.npy, norm_first.npy, num_layers.npy and input.npy).

#include <unfold/check/distance.hpp>
#include <unfold/io/npy.hpp>
#include <unfold/reference/encoder.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using unfold::Matrix;
using Json = nlohmann::json;
namespace fs = std::filesystem;
namespace reference = unfold::reference;
namespace check = unfold::check;

struct Options {
  std::string weights;
  int layer = 0;
  std::string tokens;
  int sequence = 0;
  int depth = 12;
  std::string form = "auto";
  std::optional<double> attention_step_size;
  double ffn_step_size = 1.0;
  double lo = -0.95;
  double hi = 0.95;
  std::string json;
};

// A failure to read the input: reported as one line, exit code 2.
[[noreturn]] void fail(const std::string& path, const std::string& what)
{
  throw std::runtime_error("'" + path + "': " + what);
}

std::string shape_text(const Matrix<double>& m)
{
  return std::to_string(m.rows()) + " x " + std::to_string(m.cols());
}

const char* dtype_name(unfold::io::NpyType type)
{
  switch (type) {
    case unfold::io::NpyType::float32:
      return "<f4";
    case unfold::io::NpyType::float64:
      return "<f8";
    case unfold::io::NpyType::int64:
      return "<i8";
    case unfold::io::NpyType::boolean:
      return "|b1";
  }
  return "?";
}

// The parameters of one layer, read from the folder, and what the folder lacked.
struct Loaded {
  reference::EncoderLayer<double> layer;
  std::string activation = "relu";
  Eigen::Index ffn_width = 0;
  Eigen::Index layers = 1;
  std::vector<std::string> absent;  // optional files not found
  bool has_masks = false;
};

class Folder {
 public:
  explicit Folder(std::string dir) : dir_(std::move(dir))
  {
    if (!fs::is_directory(dir_))
      fail(dir_, "not a folder (expected a folder of .npy files as make_fixtures.py writes)");
  }

  std::string path(const std::string& name) const
  {
    return (fs::path(dir_) / (name + ".npy")).string();
  }

  bool has(const std::string& name) const { return fs::exists(path(name)); }

  // A finite float matrix; 1-d files read as one row.
  Matrix<double> matrix(const std::string& name) const
  {
    const std::string file = path(name);
    require_dtype(file, {unfold::io::NpyType::float32, unfold::io::NpyType::float64,
                         unfold::io::NpyType::int64}, "a number type ('<f4', '<f8', '<i8')");
    Matrix<double> m = unfold::io::read_npy_matrix<double>(file);
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      for (Eigen::Index i = 0; i < m.rows(); ++i)
        if (!std::isfinite(m(i, j)))
          fail(file, "non-finite entry at (" + std::to_string(i) + ", " + std::to_string(j) +
                         ")");
    return m;
  }

  // A matrix of exactly rows x cols.
  Matrix<double> matrix(const std::string& name, Eigen::Index rows, Eigen::Index cols,
                        const std::string& expected) const
  {
    Matrix<double> m = matrix(name);
    if (m.rows() != rows || m.cols() != cols)
      fail(path(name), "shape " + shape_text(m) + ", expected " + expected + " = " +
                           std::to_string(rows) + " x " + std::to_string(cols));
    return m;
  }

  // A vector of `size` entries (a 1-d file), or empty when the file is absent.
  unfold::RowVector<double> optional_vector(const std::string& name, Eigen::Index size,
                                            std::vector<std::string>& absent) const
  {
    if (!has(name)) {
      absent.push_back(name + ".npy");
      return {};
    }
    const Matrix<double> m = matrix(name);
    if (m.rows() != 1 || m.cols() != size)
      fail(path(name), "shape " + shape_text(m) + ", expected a vector of " +
                           std::to_string(size) + " entries");
    return m;
  }

  std::int64_t integer(const std::string& name) const
  {
    require_dtype(path(name), {unfold::io::NpyType::int64}, "an integer ('<i8')");
    const auto m = unfold::io::read_npy_matrix<std::int64_t>(path(name));
    if (m.size() != 1)
      fail(path(name), "holds " + std::to_string(m.size()) + " entries, expected one integer");
    return m(0, 0);
  }

  bool boolean(const std::string& name) const
  {
    require_dtype(path(name), {unfold::io::NpyType::boolean}, "a boolean ('|b1')");
    const auto m = unfold::io::read_npy_matrix<bool>(path(name));
    if (m.size() != 1)
      fail(path(name), "holds " + std::to_string(m.size()) + " entries, expected one boolean");
    return m(0, 0);
  }

  const std::string& dir() const { return dir_; }

 private:
  // Reads the file once for its header, so that a wrong dtype is named with the one expected.
  static void require_dtype(const std::string& file,
                            std::initializer_list<unfold::io::NpyType> allowed,
                            const std::string& expected)
  {
    const unfold::io::NpyType type = unfold::io::read_npy(file).type;
    for (const auto t : allowed)
      if (t == type)
        return;
    fail(file, std::string("dtype '") + dtype_name(type) + "', expected " + expected);
  }

  std::string dir_;
};

Loaded load_layer(const Folder& folder, int index)
{
  Loaded out;
  if (folder.has("num_layers"))
    out.layers = Eigen::Index(folder.integer("num_layers"));
  if (index < 0 || index >= out.layers)
    fail(folder.dir(), "--layer " + std::to_string(index) + " is not a layer of the folder, " +
                           "which holds " + std::to_string(out.layers));
  const std::string p = "layer" + std::to_string(index) + "_";

  // Attention: in_proj_weight 3E x E fixes the width E.
  const Matrix<double> in_proj = folder.matrix(p + "in_proj_weight");
  const Eigen::Index E = in_proj.cols();
  if (E == 0 || in_proj.rows() != 3 * E)
    fail(folder.path(p + "in_proj_weight"),
         "shape " + shape_text(in_proj) + ", expected 3E x E for a self-attention of width E");
  const std::int64_t heads = folder.integer("heads");
  if (heads < 1 || E % heads != 0)
    fail(folder.path("heads"), "heads = " + std::to_string(heads) +
                                   ", expected a positive divisor of E = " + std::to_string(E));
  const Matrix<double> out_proj = folder.matrix(p + "out_proj_weight", E, E, "E x E");
  const auto in_bias = folder.optional_vector(p + "in_proj_bias", 3 * E, out.absent);
  const auto out_bias = folder.optional_vector(p + "out_proj_bias", E, out.absent);
  out.layer.attention = reference::attention_from_torch<double>(in_proj, in_bias, out_proj,
                                                                out_bias, Eigen::Index(heads));

  // Feed-forward: linear1 f x E, linear2 E x f.
  const Matrix<double> linear1 = folder.matrix(p + "linear1_weight");
  if (linear1.cols() != E || linear1.rows() == 0)
    fail(folder.path(p + "linear1_weight"),
         "shape " + shape_text(linear1) + ", expected f x E with E = " + std::to_string(E));
  out.ffn_width = linear1.rows();
  const Matrix<double> linear2 =
      folder.matrix(p + "linear2_weight", E, out.ffn_width, "E x f");
  const auto bias1 = folder.optional_vector(p + "linear1_bias", out.ffn_width, out.absent);
  const auto bias2 = folder.optional_vector(p + "linear2_bias", E, out.absent);
  auto activation = reference::Activation::relu;
  if (folder.has("activation")) {
    const std::int64_t code = folder.integer("activation");
    if (code != 0 && code != 1)
      fail(folder.path("activation"),
           "holds " + std::to_string(code) + ", expected 0 (relu) or 1 (gelu)");
    activation = code == 0 ? reference::Activation::relu : reference::Activation::gelu_erf;
    out.activation = code == 0 ? "relu" : "gelu";
  } else {
    out.absent.push_back("activation.npy");
  }
  out.layer.feed_forward =
      reference::feed_forward_from_torch<double>(linear1, bias1, linear2, bias2, activation);

  // Layer norms (either affine part may be absent) and their placement.
  out.layer.norm1.gain = folder.optional_vector(p + "norm1_weight", E, out.absent);
  out.layer.norm1.bias = folder.optional_vector(p + "norm1_bias", E, out.absent);
  out.layer.norm2.gain = folder.optional_vector(p + "norm2_weight", E, out.absent);
  out.layer.norm2.bias = folder.optional_vector(p + "norm2_bias", E, out.absent);
  if (folder.has("norm_first"))
    out.layer.norm_first = folder.boolean("norm_first");
  else
    out.absent.push_back("norm_first.npy");

  out.has_masks = folder.has("key_padding_mask") || folder.has("attn_mask");
  return out;
}

// Tokens n x E: a 2-d file, a 1-d file (one token) or sequence b of a 3-d file.
Matrix<double> load_tokens(const std::string& file, int sequence, Eigen::Index E,
                           std::string& described)
{
  const unfold::io::NpyArray header = unfold::io::read_npy(file);
  Matrix<double> Y;
  if (header.shape.size() == 3) {
    const auto stack = unfold::io::read_npy_stack<double>(file);
    if (sequence < 0 || std::size_t(sequence) >= stack.size())
      fail(file, "--sequence " + std::to_string(sequence) + " is not one of its " +
                     std::to_string(stack.size()) + " sequences");
    Y = stack[std::size_t(sequence)];
    described = file + ", sequence " + std::to_string(sequence) + " of " +
                std::to_string(stack.size());
  } else {
    Y = unfold::io::read_npy_matrix<double>(file);
    described = file;
  }
  if (Y.rows() == 0 || Y.cols() != E)
    fail(file, "tokens of shape " + shape_text(Y) + ", expected n x E with n >= 1 and E = " +
                   std::to_string(E));
  if (!Y.allFinite())
    fail(file, "the tokens hold a non-finite entry");
  return Y;
}

const char* status_name(unfold::StepStatus status)
{
  switch (status) {
    case unfold::StepStatus::ok:
      return "ok";
    case unfold::StepStatus::energy_rose:
      return "energy_rose";
    case unfold::StepStatus::non_finite:
      return "non_finite";
  }
  return "?";
}

Json rows_of(const Matrix<double>& m)
{
  Json rows = Json::array();
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    Json row = Json::array();
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      row.push_back(m(i, j));
    rows.push_back(row);
  }
  return rows;
}

Json values_of(const Eigen::Ref<const Eigen::VectorXd>& v)
{
  Json out = Json::array();
  for (Eigen::Index i = 0; i < v.size(); ++i)
    out.push_back(v(i));
  return out;
}

Json fit_json(const check::ValueFit<double>& fit)
{
  return {{"scale", fit.scale},
          {"distance", fit.distance},
          {"step_size", fit.step_size},
          {"gain_error", fit.gain_error}};
}

std::string widths_text(const std::vector<Eigen::Index>& widths)
{
  std::string text;
  for (std::size_t i = 0; i < widths.size(); ++i)
    text += (i > 0 ? ", " : "") + std::to_string(widths[i]);
  return text;
}

// Error messages may quote a file header with its padding and newline: one line, single spaces.
std::string one_line(const std::string& text)
{
  std::string out;
  for (const char c : text) {
    const char d = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    if (d == ' ' && (out.empty() || out.back() == ' '))
      continue;
    out += d;
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

int inspect(const Options& opt)
{
  // The JSON file is opened first, so that an unwritable path fails before any output.
  std::ofstream json_file;
  if (!opt.json.empty()) {
    json_file.open(opt.json);
    if (!json_file)
      fail(opt.json, "cannot open for writing");
  }

  const Folder folder(opt.weights);
  const Loaded loaded = load_layer(folder, opt.layer);
  const reference::EncoderLayer<double>& layer = loaded.layer;
  const Eigen::Index E = layer.attention.W_Q.rows();
  const Eigen::Index heads = layer.attention.heads;

  std::string tokens_file = opt.tokens.empty() ? folder.path("input") : opt.tokens;
  std::string tokens_text;
  const Matrix<double> Y = load_tokens(tokens_file, opt.sequence, E, tokens_text);

  check::NearestOptions<double> nearest_options;
  nearest_options.form = opt.form == "single"  ? check::AttentionForm::single_head
                         : opt.form == "multi" ? check::AttentionForm::multi_head
                                               : check::AttentionForm::automatic;
  nearest_options.attention_step_size = opt.attention_step_size;
  nearest_options.feed_forward.step_size = opt.ffn_step_size;
  nearest_options.feed_forward.lo = opt.lo;
  nearest_options.feed_forward.hi = opt.hi;
  const auto report = check::layer_distance<double>(layer, Y, nearest_options);
  const auto result = report.nearest.run(Y, std::size_t(opt.depth));
  const auto mono = result.trace.monotonicity();

  // The layer and the tokens.
  std::printf("unfold-inspect: %s, layer %d (the folder holds %td)\n", folder.dir().c_str(),
              opt.layer, loaded.layers);
  std::printf("layer: d = %td, %td heads of width %td, feed-forward width %td, %s, %s\n", E,
              heads, E / heads, loaded.ffn_width, loaded.activation.c_str(),
              layer.norm_first ? "pre-norm" : "post-norm");
  std::printf("tokens: %s, n = %td\n", tokens_text.c_str(), Y.rows());
  if (!loaded.absent.empty()) {
    std::string list;
    for (const auto& name : loaded.absent)
      list += (list.empty() ? "" : ", ") + name;
    std::printf("absent, defaults used: %s\n", list.c_str());
  }
  if (loaded.has_masks)
    std::printf("note: the folder's masks are not applied (the unfolded layer has none)\n");

  // Attention.
  const auto& att = report.attention;
  std::printf("\nattention per head: M_h = s W_Q^h W_K^h^T, V_h = W_V^h W_O^h, U_h spans the "
              "PSD part of sym(M_h)\n");
  std::printf("  head  asymmetry  psd_violation  rank  projection  value_scale  value_distance"
              "  query_bias\n");
  for (std::size_t h = 0; h < att.heads.size(); ++h) {
    const auto& head = att.heads[h];
    std::printf("  %4zu  %9.4f  %13.4f  %4td  %10.4f  %11.4f  %14.4f  %10.4f\n", h,
                head.asymmetry, head.psd_violation, head.basis.cols(), head.projection_distance,
                head.value_scale, head.value_distance, head.query_bias);
  }
  std::printf("  overlap between heads, max ||U_h^T U_g||_2: %.4f\n", att.overlap);
  std::printf("  V_h against c U_h U_h^T: c = %.4f, distance %.4f, alpha %.4g, gain error %.4f\n",
              att.blocks.scale, att.blocks.distance, att.blocks.step_size,
              att.blocks.gain_error);
  std::printf("  W_V W_O against c I:     c = %.4f, distance %.4f, alpha %.4g, gain error %.4f\n",
              att.full.scale, att.full.distance, att.full.step_size, att.full.gain_error);
  std::printf("  residual weight %.4f, output offset ||b_V W_O + b_O|| = %.4f\n",
              att.residual_weight, att.output_offset);

  // Feed-forward.
  const auto& ffn = report.feed_forward;
  std::printf("\nfeed-forward: T = W1 W2 + r I, N = the nearest symmetric map with spectrum in "
              "[%.4g, %.4g]\n", ffn.target.map_lo(), ffn.target.map_hi());
  std::printf("  ||T - N|| / ||T||        %.4f\n", ffn.symmetric_distance);
  std::printf("  ||T - T^T|| / (2 ||T||)  %.4f\n", ffn.asymmetry);
  std::printf("  ||W2 - J|| / sqrt(d)     %.4f\n", ffn.output_map_distance);
  std::printf("  ||b2||                   %.4f\n", ffn.output_bias);
  std::printf("  residual weight r        %.4f\n", ffn.residual_weight);
  std::printf("  activation               %s (%s)\n", loaded.activation.c_str(),
              ffn.activation_is_prox ? "a prox map" : "not a prox map; the nearest step uses "
                                                      "ReLU");

  // The nearest layer and the gap.
  const auto widths = report.nearest.head_widths();
  std::printf("\nnearest unfolded layer: %s, metric widths %s, alpha = %.4g%s\n",
              report.nearest.multi_head() ? "multi-head MM step" : "single-head MM step",
              widths_text(widths).c_str(), report.nearest.attention_step_size(),
              opt.attention_step_size ? " (given)" : " (fitted)");
  std::printf("  then the feed-forward step, alpha = %.4g%s, eigenvalues of S in [%.4g, %.4g]\n",
              ffn.target.step_size, ffn.relu ? ", ReLU" : "", ffn.target.lo, ffn.target.hi);
  if (report.layer_norms_dropped)
    std::printf("  the layer norms are dropped\n");
  std::printf("output gap ||layer(Y) - unfolded(Y)|| / ||layer(Y)|| = %.4f (metric norm spread "
              "%.4f)\n", report.output_gap, report.norm_spread);

  // The energy trace of the tied stack.
  std::printf("\nenergy trace, weight-tied stack of %d layers (E = %s + %s):\n", opt.depth,
              result.trace.component_names.at(0).c_str(),
              result.trace.component_names.at(1).c_str());
  std::printf("%5s  %-23s  %12s  %12s  %14s\n", "layer", "step", "E", "E_attention",
              "E_feedforward");
  for (const auto& e : result.trace.entries)
    std::printf("%5td  %-23s  %12.5f  %12.5f  %14.5f%s%s\n", e.layer, e.name.c_str(), e.total,
                e.components.at(0), e.components.at(1),
                e.status == unfold::StepStatus::ok ? "" : "  ",
                e.status == unfold::StepStatus::ok ? "" : status_name(e.status));
  std::printf("monotone: %s, increases: %zu, largest rise %.4g (%.4g of the range)%s\n",
              mono.monotone ? "yes" : "no", mono.increases, mono.largest_increase,
              mono.largest_relative_increase, result.completed ? "" : ", stopped: non-finite");

  if (opt.json.empty())
    return 0;

  // The same report as JSON.
  Json heads_json = Json::array();
  for (const auto& head : att.heads)
    heads_json.push_back({{"asymmetry", head.asymmetry},
                          {"psd_violation", head.psd_violation},
                          {"rank", head.basis.cols()},
                          {"eigenvalues", values_of(head.eigenvalues)},
                          {"projection_distance", head.projection_distance},
                          {"value_scale", head.value_scale},
                          {"value_distance", head.value_distance},
                          {"query_bias", head.query_bias}});
  Json entries = Json::array();
  for (const auto& e : result.trace.entries)
    entries.push_back({{"layer", e.layer},
                       {"step", e.step},
                       {"name", e.name},
                       {"total", e.total},
                       {"components", e.components},
                       {"status", status_name(e.status)}});
  Json monotonicity = {{"monotone", mono.monotone},
                       {"increases", mono.increases},
                       {"largest_increase", mono.largest_increase},
                       {"largest_relative_increase", mono.largest_relative_increase}};
  monotonicity["first_increase"] =
      mono.first_increase ? Json(*mono.first_increase) : Json(nullptr);

  Json out = {
      {"weights", folder.dir()},
      {"layer", opt.layer},
      {"tokens", tokens_text},
      {"config",
       {{"d", E},
        {"heads", heads},
        {"feedforward_width", loaded.ffn_width},
        {"activation", loaded.activation},
        {"norm_first", layer.norm_first},
        {"absent", loaded.absent}}},
      {"attention",
       {{"heads", heads_json},
        {"overlap", att.overlap},
        {"blocks", fit_json(att.blocks)},
        {"full", fit_json(att.full)},
        {"residual_weight", att.residual_weight},
        {"output_offset", att.output_offset}}},
      {"feed_forward",
       {{"symmetric_distance", ffn.symmetric_distance},
        {"asymmetry", ffn.asymmetry},
        {"output_map_distance", ffn.output_map_distance},
        {"output_bias", ffn.output_bias},
        {"residual_weight", ffn.residual_weight},
        {"activation_is_prox", ffn.activation_is_prox},
        {"relu", ffn.relu},
        {"step_size", ffn.target.step_size},
        {"lo", ffn.target.lo},
        {"hi", ffn.target.hi},
        {"S", rows_of(ffn.S)},
        {"b", rows_of(ffn.b)[0]}}},
      {"nearest",
       {{"form", report.nearest.multi_head() ? "multi_head" : "single_head"},
        {"metric_widths", widths},
        {"attention_step_size", report.nearest.attention_step_size()},
        {"attention_step_size_given", opt.attention_step_size.has_value()},
        {"layer_norms_dropped", report.layer_norms_dropped}}},
      {"output_gap", report.output_gap},
      {"norm_spread", report.norm_spread},
      {"trace",
       {{"depth", opt.depth},
        {"component_names", result.trace.component_names},
        {"entries", entries},
        {"completed", result.completed},
        {"monotonicity", monotonicity}}}};

  json_file << out.dump(2) << '\n';
  if (!json_file)
    fail(opt.json, "writing failed");
  return 0;
}

}  // namespace

int main(int argc, char** argv)
{
  Options opt;
  CLI::App app{"unfold-inspect: the distance of a PyTorch TransformerEncoderLayer from an "
               "energy-descent layer, its nearest unfolded layer, and the energy trace of a "
               "weight-tied stack of it"};
  app.add_option("weights", opt.weights,
                 "folder of .npy files in the fixture format (tests/fixtures/make_fixtures.py)")
      ->required();
  app.add_option("--layer", opt.layer, "which layer<l>_ of the folder to read")
      ->capture_default_str();
  app.add_option("--tokens", opt.tokens,
                 ".npy tokens, n x d (or N x n x d with --sequence); default: the folder's "
                 "input.npy");
  app.add_option("--sequence", opt.sequence, "which sequence of a 3-d token file")
      ->capture_default_str();
  app.add_option("--depth", opt.depth, "layers of the weight-tied unfolded stack")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--form", opt.form,
                 "attention of the nearest layer: auto (single for one head, else multi), "
                 "single (one metric), multi (orthonormal head blocks)")
      ->check(CLI::IsMember({"auto", "single", "multi"}))
      ->capture_default_str();
  app.add_option("--attention-step-size", opt.attention_step_size,
                 "alpha of the attention step; default: the one fitted to the layer");
  app.add_option("--ffn-step-size", opt.ffn_step_size, "alpha of the feed-forward step")
      ->capture_default_str();
  app.add_option("--lo", opt.lo, "smallest eigenvalue allowed for S")->capture_default_str();
  app.add_option("--hi", opt.hi, "largest eigenvalue allowed for S")->capture_default_str();
  app.add_option("--json", opt.json, "also write the report as JSON to this file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    return inspect(opt);
  } catch (const std::exception& e) {
    std::cerr << "unfold-inspect: error: " << one_line(e.what()) << '\n';
  } catch (...) {
    std::cerr << "unfold-inspect: error: unknown failure\n";
  }
  return 2;
}
