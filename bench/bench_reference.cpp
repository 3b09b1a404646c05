// The reference Transformer layers (unfold::reference), the PyTorch-equivalent baseline the
// unfolded steps are compared with: multi-head self-attention as torch.nn.MultiheadAttention
// computes it (projections with biases, scale 1 / sqrt(k / h), output projection), and a
// post-norm encoder layer as torch.nn.TransformerEncoderLayer (ReLU, dim_feedforward = 4d,
// no dropout). bench/compare_pytorch.py times the same layers in PyTorch.
//
// flops, self-attention: 8nd^2 (four projections) + 4n^2 d (scores and mixing, all heads
// together). Encoder layer: that plus 16nd^2 (the two feed-forward maps, f = 4d); the layer
// norms, softmax and activation are not counted.

#include "common.hpp"

#include <unfold/reference/encoder.hpp>

namespace {

using unfold::Matrix;
using unfold::RowVector;

template <class Scalar>
unfold::reference::MultiHeadAttention<Scalar> attention_params(Eigen::Index d, Eigen::Index heads)
{
  const double sigma = 1.0 / std::sqrt(double(d));
  unfold::reference::MultiHeadAttention<Scalar> p;
  p.W_Q = unfold::bench::tokens<Scalar>(d, d, 11, sigma);
  p.W_K = unfold::bench::tokens<Scalar>(d, d, 12, sigma);
  p.W_V = unfold::bench::tokens<Scalar>(d, d, 13, sigma);
  p.W_O = unfold::bench::tokens<Scalar>(d, d, 14, sigma);
  p.b_Q = unfold::bench::tokens<Scalar>(1, d, 15);
  p.b_K = unfold::bench::tokens<Scalar>(1, d, 16);
  p.b_V = unfold::bench::tokens<Scalar>(1, d, 17);
  p.b_O = unfold::bench::tokens<Scalar>(1, d, 18);
  p.heads = heads;
  return p;
}

template <class Scalar>
void BM_reference_attention(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = unfold::bench::width, heads = state.range(1);
  const auto params = attention_params<Scalar>(d, heads);
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d, 0, 1.0);

  unfold::reference::AttentionWorkspace<Scalar> workspace;
  Matrix<Scalar> out;
  for (auto _ : state) {
    unfold::reference::self_attention<Scalar>(Y, params, {}, workspace, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 8.0 * n * d * d + 4.0 * n * n * d);
  state.counters["steps/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

template <class Scalar>
void BM_reference_encoder_layer(benchmark::State& state)
{
  const Eigen::Index n = state.range(0), d = unfold::bench::width, heads = state.range(1);
  const Eigen::Index f = 4 * d;
  unfold::reference::EncoderLayer<Scalar> layer;
  layer.attention = attention_params<Scalar>(d, heads);
  layer.feed_forward.W1 = unfold::bench::tokens<Scalar>(d, f, 21, 1.0 / std::sqrt(double(d)));
  layer.feed_forward.b1 = unfold::bench::tokens<Scalar>(1, f, 22);
  layer.feed_forward.W2 = unfold::bench::tokens<Scalar>(f, d, 23, 1.0 / std::sqrt(double(f)));
  layer.feed_forward.b2 = unfold::bench::tokens<Scalar>(1, d, 24);
  const Matrix<Scalar> Y = unfold::bench::tokens<Scalar>(n, d, 0, 1.0);

  for (auto _ : state) {
    Matrix<Scalar> out = unfold::reference::encoder_layer<Scalar>(Y, layer);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  unfold::bench::set_flop_rate(state, 8.0 * n * d * d + 4.0 * n * n * d + 4.0 * n * d * f);
  state.counters["steps/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

void lengths_and_heads(benchmark::internal::Benchmark* b)
{
  b->ArgNames({"n", "heads"});
  for (long heads : {1, 4})
    for (long n : {32, 128, 512, 1024, 2048})
      b->Args({n, heads});
  b->MinTime(0.05)->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_reference_attention, float)->Apply(lengths_and_heads);
BENCHMARK_TEMPLATE(BM_reference_attention, double)->Apply(lengths_and_heads);
BENCHMARK_TEMPLATE(BM_reference_encoder_layer, float)->Apply(lengths_and_heads);
BENCHMARK_TEMPLATE(BM_reference_encoder_layer, double)->Apply(lengths_and_heads);

BENCHMARK_MAIN();
