// run() takes the attention component of a trace entry from the next MM step, which computes
// it as a by-product; this checks that the trace is still the energy of every component at
// the tokens each entry describes, bit for bit, against a walk through the stack that
// evaluates every energy itself: tied and untied stacks, the attention step first or second,
// per step and per layer, and the observer's tokens and entries.

#include "helpers.hpp"

#include <cstddef>
#include <vector>

using namespace unfold;
using unfold::test::random_tokens;

namespace {

template <class Scalar>
struct Expected {
  std::ptrdiff_t layer;
  std::ptrdiff_t step;
  std::size_t energy_index;
  std::vector<Scalar> components;
  Matrix<Scalar> tokens;
};

// Every entry run() should record, each energy evaluated directly at the tokens it describes.
template <class LayerT>
std::vector<Expected<typename LayerT::Scalar>> walk(const Stack<LayerT>& stack,
                                                    const Matrix<typename LayerT::Scalar>& Y,
                                                    TraceGranularity granularity)
{
  using Scalar = typename LayerT::Scalar;
  std::vector<Expected<Scalar>> expected;
  Matrix<Scalar> current = Y, next(Y.rows(), Y.cols());
  auto record = [&](std::size_t l, std::ptrdiff_t layer, std::ptrdiff_t step) {
    Expected<Scalar> e{layer, step, stack.weight_tied() ? 0 : l, {}, current};
    stack.layer(l).components(current, e.components);
    expected.push_back(std::move(e));
  };

  record(0, -1, -1);
  for (std::size_t l = 0; l < stack.depth(); ++l) {
    if (l > 0 && !stack.weight_tied())
      record(l, std::ptrdiff_t(l), -1);
    stack.layer(l).for_each_step([&](std::size_t k, const auto& s) {
      s.apply(current, next);
      current.swap(next);
      if (granularity == TraceGranularity::every_step || k + 1 == LayerT::size)
        record(l, std::ptrdiff_t(l), std::ptrdiff_t(k));
    });
  }
  return expected;
}

template <class LayerT>
void require_trace_matches_walk(const Stack<LayerT>& stack,
                                const Matrix<typename LayerT::Scalar>& Y)
{
  using Scalar = typename LayerT::Scalar;
  for (TraceGranularity granularity :
       {TraceGranularity::every_step, TraceGranularity::every_layer}) {
    INFO("granularity " << (granularity == TraceGranularity::every_step ? "step" : "layer"));
    const auto expected = walk(stack, Y, granularity);

    // The observer sees, for each step, the tokens after it and (when recorded) its entry.
    std::vector<Matrix<Scalar>> seen_tokens;
    std::vector<std::vector<Scalar>> seen_components;
    RunOptions<Scalar> options;
    options.granularity = granularity;
    options.observer = [&](const StepEvent<Scalar>& event) {
      seen_tokens.push_back(event.tokens);
      seen_components.push_back(event.entry ? event.entry->components : std::vector<Scalar>{});
    };
    const auto result = run(stack, Y, options);

    REQUIRE(result.completed);
    REQUIRE(result.tokens == expected.back().tokens);
    REQUIRE(result.trace.entries.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const TraceEntry<Scalar>& entry = result.trace.entries[i];
      INFO("entry " << i << ": layer " << entry.layer << ", step " << entry.step);
      CHECK(entry.layer == expected[i].layer);
      CHECK(entry.step == expected[i].step);
      CHECK(entry.energy_index == expected[i].energy_index);
      CHECK(entry.components == expected[i].components);
      Scalar total = 0;
      for (Scalar c : expected[i].components)
        total += c;
      CHECK(entry.total == total);
    }

    // One observer call per step, in order, each after its step.
    const std::size_t steps = stack.depth() * LayerT::size;
    REQUIRE(seen_tokens.size() == steps);
    std::size_t next_entry = 1;
    for (std::size_t call = 0; call < steps; ++call) {
      INFO("observer call " << call);
      const bool recorded = granularity == TraceGranularity::every_step ||
                            (call + 1) % LayerT::size == 0;
      if (!stack.weight_tied() && call > 0 && call % LayerT::size == 0)
        ++next_entry;  // the start entry of an untied layer has no observer call
      if (recorded) {
        CHECK(seen_tokens[call] == expected[next_entry].tokens);
        CHECK(seen_components[call] == expected[next_entry].components);
        ++next_entry;
      } else {
        CHECK(seen_components[call].empty());
      }
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("the trace of a tied stack equals the energies evaluated one by one",
                   "[stack][trace]", float, double)
{
  using Scalar = TestType;
  for (bool relu : {false, true}) {
    for (Eigen::Index n : {1, 2, 9, 40}) {
      INFO("relu " << relu << ", n " << n);
      const auto layer =
          compat::consistent_layer(compat::PaperWeights<Scalar>::xavier(5, 400 + n), relu);
      const auto stack = Stack<compat::ConsistentLayer<Scalar>>::tied(layer, 4);
      require_trace_matches_walk(stack, random_tokens<Scalar>(n, 5, 500 + n, 0.7));
    }
  }
}

TEMPLATE_TEST_CASE("the trace of an untied stack equals the energies evaluated one by one",
                   "[stack][trace]", float, double)
{
  using Scalar = TestType;
  std::vector<compat::ConsistentLayer<Scalar>> layers;
  for (std::uint64_t seed : {601, 602, 603})
    layers.push_back(
        compat::consistent_layer(compat::PaperWeights<Scalar>::xavier(4, seed), true));
  const auto stack = Stack<compat::ConsistentLayer<Scalar>>::untied(layers);
  require_trace_matches_walk(stack, random_tokens<Scalar>(17, 4, 604, 0.8));
}

TEST_CASE("the trace is exact when the reporting step comes second in its layer",
          "[stack][trace]")
{
  // Feed-forward first, then attention: the attention component of each entry after the
  // feed-forward step comes from the MM step that follows it, in the same layer.
  using Flipped = Layer<FeedForwardStep<double>, MMAttentionStep<double>>;
  const auto base = compat::consistent_layer(compat::PaperWeights<double>::xavier(6, 701), true);
  const auto stack = Stack<Flipped>::tied(Flipped(base.step<1>(), base.step<0>()), 3);
  require_trace_matches_walk(stack, random_tokens<double>(12, 6, 702, 0.6));

  // Two MM steps in a row, in one energy, with a streamed policy of small blocks.
  using Twice = Layer<MMAttentionStep<double>, MMAttentionStep<double>>;
  const AttentionEnergy<double> energy(random_tokens<double>(6, 6, 703, 0.4), 0.0,
                                       AttentionPolicy::streamed(4));
  const MMAttentionStep<double> step(energy, {0.7});
  require_trace_matches_walk(Stack<Twice>::tied(Twice(step, step), 3),
                             random_tokens<double>(19, 6, 704, 0.6));
}
