// The unfolding operator: layers of steps, tied and untied stacks, the trace, the observer,
// the monotonicity report and the non-finite status.

#include "helpers.hpp"

#include <cmath>
#include <initializer_list>
#include <limits>

using namespace unfold;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;

namespace {

template <class Scalar>
compat::ConsistentLayer<Scalar> random_consistent_layer(Eigen::Index d, std::uint64_t seed,
                                                        bool relu)
{
  return compat::consistent_layer(compat::PaperWeights<Scalar>::xavier(d, seed), relu);
}

// A user-defined step: it doubles the tokens and names the feed-forward energy it is traced
// against; from Y = 0 with a NaN flag it writes NaN, to exercise the non-finite status.
struct DoublingStep {
  using Scalar = double;
  FeedForwardEnergy<double> e;
  bool poison = false;

  std::string_view name() const { return "doubling"; }
  const FeedForwardEnergy<double>& energy() const { return e; }
  void apply(const ConstMatrixRef<double>& Y, MatrixRef<double> out) const
  {
    out = 2.0 * Y;
    if (poison)
      out(0, 0) = std::numeric_limits<double>::quiet_NaN();
  }
  DescentBound<double> bound(const ConstMatrixRef<double>&) const { return {1.0, 0.0, "none"}; }
};

}  // namespace

TEMPLATE_TEST_CASE("a weight-tied consistent stack records a monotone trace", "[stack]", float,
                   double)
{
  using Scalar = TestType;
  for (bool relu : {false, true}) {
    INFO("relu " << relu);
    const auto stack = Stack<compat::ConsistentLayer<Scalar>>::tied(
        random_consistent_layer<Scalar>(6, 3, relu), 12);
    const Matrix<Scalar> Y = random_tokens<Scalar>(10, 6, 4, 0.8);
    const auto result = run(stack, Y);

    REQUIRE(result.completed);
    REQUIRE(result.trace.entries.size() == 1 + 12 * 2);
    CHECK(result.trace.component_names == std::vector<std::string>{"attention", "feedforward"});
    CHECK(result.trace.entries[0].name == "start");
    CHECK(result.trace.entries[1].name == "mm_attention");
    CHECK(result.trace.entries[2].name == (relu ? "feedforward_relu" : "feedforward"));
    CHECK(result.trace.layer_totals().size() == 13);

    const auto report = result.trace.monotonicity();
    INFO("largest increase " << report.largest_increase);
    CHECK(report.monotone);
    CHECK(report.increases == 0);
    for (const auto& entry : result.trace.entries) {
      CHECK(entry.status == StepStatus::ok);
      CHECK(entry.total == Approx(entry.components[0] + entry.components[1]));
    }

    // The trace's last entry is the energy of the returned tokens.
    const auto& layer = stack.layer(0);
    const Scalar final_energy = layer.template step<0>().energy().value(result.tokens) +
                                layer.template step<1>().energy().value(result.tokens);
    CHECK(result.trace.entries.back().total == Approx(final_energy));
  }
}

TEST_CASE("running a stack equals applying its steps by hand", "[stack]")
{
  const auto layer = random_consistent_layer<double>(5, 9, true);
  const auto stack = Stack<compat::ConsistentLayer<double>>::tied(layer, 3);
  const Matrix<double> Y = random_tokens<double>(7, 5, 10);

  Matrix<double> by_hand = Y;
  for (int l = 0; l < 3; ++l) {
    layer.step<0>().apply(by_hand, by_hand);
    layer.step<1>().apply(by_hand, by_hand);
  }
  const auto result = run(stack, Y, {false, false, {}});
  CHECK(result.tokens == by_hand);
  CHECK(result.trace.entries.empty());
}

TEMPLATE_TEST_CASE("an untied stack runs one layer per position and compares energies within a "
                   "layer",
                   "[stack]", float, double)
{
  using Scalar = TestType;
  std::vector<compat::ConsistentLayer<Scalar>> layers;
  for (std::uint64_t seed : {21, 22, 23})
    layers.push_back(random_consistent_layer<Scalar>(4, seed, false));
  const auto stack = Stack<compat::ConsistentLayer<Scalar>>::untied(layers);
  const Matrix<Scalar> Y = random_tokens<Scalar>(6, 4, 24);
  const auto result = run(stack, Y);

  // start, then per layer: [start of layer l > 0], attention, feed-forward.
  REQUIRE(result.trace.entries.size() == 1 + 3 * 2 + 2);
  CHECK(result.trace.entries[3].name == "start");
  CHECK(result.trace.entries[3].layer == 1);
  CHECK(result.trace.entries[3].energy_index == 1);
  CHECK(result.trace.layer_totals().size() == 4);
  CHECK(result.trace.monotonicity().monotone);

  Matrix<Scalar> by_hand = Y;
  for (const auto& layer : layers) {
    layer.template step<0>().apply(by_hand, by_hand);
    layer.template step<1>().apply(by_hand, by_hand);
  }
  CHECK((result.tokens - by_hand).cwiseAbs().maxCoeff() == Scalar(0));
  CHECK_FALSE(stack.weight_tied());
  CHECK(stack.depth() == 3);
}

TEST_CASE("the observer sees every step with its trace entry", "[stack]")
{
  const auto stack = Stack<compat::ConsistentLayer<double>>::tied(
      random_consistent_layer<double>(3, 30, true), 4);
  const Matrix<double> Y = random_tokens<double>(5, 3, 31);
  std::vector<std::pair<std::size_t, std::size_t>> seen;
  std::vector<double> totals;
  RunOptions<double> options;
  options.check_bounds = true;
  options.observer = [&](const StepEvent<double>& event) {
    seen.emplace_back(event.layer, event.step);
    REQUIRE(event.entry != nullptr);
    totals.push_back(event.entry->total);
    CHECK(event.tokens.rows() == 5);
  };
  const auto result = run(stack, Y, options);

  REQUIRE(seen.size() == 8);
  CHECK(seen[0] == std::pair<std::size_t, std::size_t>{0, 0});
  CHECK(seen[7] == std::pair<std::size_t, std::size_t>{3, 1});
  for (std::size_t i = 0; i < totals.size(); ++i)
    CHECK(totals[i] == result.trace.entries[i + 1].total);

  // Attention with step size 1 is inside its bound; the first feed-forward step starts from
  // tokens with negative entries, where the ReLU step has no guarantee, later ones from >= 0.
  CHECK(*result.trace.entries[1].bound_holds);
  CHECK_FALSE(*result.trace.entries[2].bound_holds);
  CHECK(*result.trace.entries[4].bound_holds);
}

TEMPLATE_TEST_CASE("the monotonicity report finds the first and the largest increase",
                   "[trace]", float, double)
{
  using Scalar = TestType;
  Trace<Scalar> trace;
  for (const Scalar e : {10, 8, 9, 4, 4, 6, 0}) {
    TraceEntry<Scalar> entry;
    entry.total = e;
    trace.entries.push_back(entry);
  }
  const auto report = trace.monotonicity();
  CHECK_FALSE(report.monotone);
  CHECK(report.first_increase == std::optional<std::size_t>(2));
  CHECK(report.increases == 2);
  CHECK(report.largest_increase == Scalar(2));
  CHECK(report.largest_relative_increase == Approx(0.2));

  // A rise at the level of rounding (4 ulps, below the 64-epsilon tolerance) is not an
  // increase; one of 128 ulps is. (1 + 1e-16, as this test once had, is 1 in both types.)
  const Scalar eps = std::numeric_limits<Scalar>::epsilon();
  auto trace_of = [](std::initializer_list<Scalar> totals) {
    Trace<Scalar> out;
    for (const Scalar e : totals) {
      TraceEntry<Scalar> entry;
      entry.total = e;
      out.entries.push_back(entry);
    }
    return out;
  };
  REQUIRE(Scalar(1) + 4 * eps > Scalar(1));
  CHECK(trace_of({1, 1 + 4 * eps, 1}).monotonicity().monotone);
  const auto rise = trace_of({1, 1 + 128 * eps, 1}).monotonicity();
  CHECK_FALSE(rise.monotone);
  CHECK(rise.first_increase == std::optional<std::size_t>(1));
}

TEST_CASE("a step that produces NaN stops the run with status non_finite", "[stack][status]")
{
  const FeedForwardEnergy<double> e(Matrix<double>::Zero(2, 2), RowVector<double>::Zero(2));
  using L = Layer<DoublingStep, DoublingStep>;
  const auto stack = Stack<L>::tied(L(DoublingStep{e, false}, DoublingStep{e, true}), 5);
  const Matrix<double> Y = Matrix<double>::Ones(3, 2);
  const auto result = run(stack, Y);

  CHECK_FALSE(result.completed);
  REQUIRE(result.trace.entries.size() == 3);
  CHECK(result.trace.entries[1].status == StepStatus::energy_rose);
  CHECK(result.trace.entries[2].status == StepStatus::non_finite);
  CHECK(std::isnan(result.trace.entries[2].total));
}

TEST_CASE("stacks reject bad input", "[stack][validation]")
{
  const auto layer = random_consistent_layer<double>(4, 40, true);
  CHECK(invalid_argument_message([&] {
          Stack<compat::ConsistentLayer<double>>::tied(layer, 0);
        }) == "Stack::tied: depth = 0, expected depth >= 1");
  CHECK(invalid_argument_message([&] {
          Stack<compat::ConsistentLayer<double>>::untied(
              {layer, random_consistent_layer<double>(3, 41, true)});
        }) == "Stack::untied: layers[1] works on d = 3, expected d = 4");

  const auto stack = Stack<compat::ConsistentLayer<double>>::tied(layer, 2);
  const Matrix<double> wrong = random_tokens<double>(5, 3, 42);
  CHECK(invalid_argument_message([&] { run(stack, wrong); }) ==
        "run: Y has 3 columns, expected d = 4");

  const AttentionEnergy<double> narrow(random_tokens<double>(3, 3, 43));
  const FeedForwardEnergy<double> wide(Matrix<double>::Zero(4, 4), RowVector<double>::Zero(4));
  CHECK(invalid_argument_message([&] {
          compat::ConsistentLayer<double>(MMAttentionStep<double>(narrow),
                                          FeedForwardStep<double>(wide));
        }) == "Layer: step 'feedforward_relu' works on d = 4, expected d = 3");
}
