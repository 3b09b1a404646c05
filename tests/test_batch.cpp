// Batches of sequences over a thread pool: every result equals the single-sequence run bit for
// bit, whatever the number of threads; sequences of different lengths; stateful steps; the
// observer; bad sequences named before any work starts.

#include "helpers.hpp"

#include <unfold/stack/batch.hpp>

#include <cstddef>
#include <vector>

using namespace unfold;
using unfold::test::invalid_argument_message;
using unfold::test::random_tokens;

namespace {

template <class Scalar>
std::vector<Matrix<Scalar>> random_batch(std::size_t size, Eigen::Index d, std::uint64_t seed)
{
  std::vector<Matrix<Scalar>> batch;
  for (std::size_t b = 0; b < size; ++b)
    batch.push_back(random_tokens<Scalar>(Eigen::Index(1 + (7 * b) % 23), d, seed + b, 0.8));
  return batch;
}

template <class Scalar>
void require_same(const StackResult<Scalar>& a, const StackResult<Scalar>& b)
{
  REQUIRE(a.completed == b.completed);
  REQUIRE(a.tokens == b.tokens);
  REQUIRE(a.trace.entries.size() == b.trace.entries.size());
  for (std::size_t i = 0; i < a.trace.entries.size(); ++i) {
    INFO("entry " << i);
    CHECK(a.trace.entries[i].total == b.trace.entries[i].total);
    CHECK(a.trace.entries[i].components == b.trace.entries[i].components);
    CHECK(a.trace.entries[i].status == b.trace.entries[i].status);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("a batch gives the same results on 1 and 2 threads, bit for bit", "[batch]",
                   float, double)
{
  using Scalar = TestType;
  using Layer = compat::ConsistentLayer<Scalar>;
  const auto stack = Stack<Layer>::tied(
      compat::consistent_layer(compat::PaperWeights<Scalar>::xavier(6, 61), true), 5);
  const auto batch = random_batch<Scalar>(13, 6, 62);

  for (TraceGranularity granularity :
       {TraceGranularity::every_step, TraceGranularity::every_layer}) {
    RunOptions<Scalar> options;
    options.granularity = granularity;
    const auto one = run_batch(stack, batch, options, {1});
    const auto two = run_batch(stack, batch, options, {2});
    const auto many = run_batch(stack, batch, options, {5});
    REQUIRE(one.size() == batch.size());
    REQUIRE(two.size() == batch.size());
    for (std::size_t b = 0; b < batch.size(); ++b) {
      INFO("sequence " << b << " of length " << batch[b].rows());
      require_same(one[b], two[b]);
      require_same(one[b], many[b]);
      require_same(one[b], run(stack, batch[b], options));
    }
  }
}

TEST_CASE("a batch of an untied stack with a stateful step runs each sequence afresh",
          "[batch]")
{
  // Heavy-ball momentum keeps the previous point between calls; every run resets it, and
  // every thread has its own copy of the stack.
  using Momentum = HeavyBallStep<MMAttentionStep<double>>;
  using L = Layer<Momentum, FeedForwardStep<double>>;
  std::vector<L> layers;
  for (std::uint64_t seed : {71, 72, 73}) {
    const auto w = compat::PaperWeights<double>::xavier(4, seed);
    const auto base = compat::consistent_layer(w, true);
    layers.emplace_back(Momentum(base.step<0>(), 0.5), base.step<1>());
  }
  const auto stack = Stack<L>::untied(layers);
  const auto batch = random_batch<double>(9, 4, 74);
  const auto one = run_batch(stack, batch, {}, {1});
  const auto two = run_batch(stack, batch, {}, {2});
  for (std::size_t b = 0; b < batch.size(); ++b) {
    INFO("sequence " << b);
    require_same(one[b], two[b]);
    require_same(one[b], run(stack, batch[b]));
  }
}

TEST_CASE("the batch observer sees every step of every sequence", "[batch]")
{
  const auto stack = Stack<compat::ConsistentLayer<double>>::tied(
      compat::consistent_layer(compat::PaperWeights<double>::xavier(3, 81), false), 4);
  const auto batch = random_batch<double>(6, 3, 82);
  std::size_t calls = 0;  // guarded by run_batch's lock
  RunOptions<double> options;
  options.observer = [&](const StepEvent<double>& event) {
    ++calls;
    CHECK(event.entry != nullptr);
  };
  run_batch(stack, batch, options, {2});
  CHECK(calls == batch.size() * 4 * 2);
}

TEST_CASE("a batch is checked before it runs, and may be empty", "[batch][validation]")
{
  const auto stack = Stack<compat::ConsistentLayer<double>>::tied(
      compat::consistent_layer(compat::PaperWeights<double>::xavier(3, 91), true), 2);
  std::vector<Matrix<double>> batch = random_batch<double>(4, 3, 92);
  batch[2] = random_tokens<double>(5, 2, 93);
  CHECK(invalid_argument_message([&] { run_batch(stack, batch); }) ==
        "run_batch: batch[2]: Y has 2 columns, expected d = 3");
  CHECK(run_batch(stack, std::vector<Matrix<double>>{}).empty());
  CHECK(BatchOptions{0}.workers(5) >= 1);
  CHECK(BatchOptions{8}.workers(3) == 3);
  CHECK(BatchOptions{2}.workers(0) == 1);
}
