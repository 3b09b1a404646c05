// A four-layer unfolded Transformer whose forward pass descends an explicit energy.
#include <unfold/unfold.hpp>

#include <cstdio>
#include <random>

int main()
{
  using Matrix = unfold::Matrix<double>;
  const Eigen::Index n = 8, d = 4;
  std::mt19937_64 rng(7);

  // Tokens are the rows of Y; P is the attention metric factor, S the feed-forward weight.
  const Matrix Y = unfold::normal_matrix<double>(n, d, 1.0, rng);
  const Matrix P = unfold::normal_matrix<double>(d, d, 0.5, rng);
  const Matrix A = unfold::normal_matrix<double>(d, d, 0.5, rng);
  const Matrix S = unfold::spectral_clamp(Matrix(A + A.transpose()), -0.95, 0.95);
  const unfold::RowVector<double> b = unfold::normal_matrix<double>(1, d, 0.5, rng);

  // Attention: one MM step on E_att (softmax attention with key-norm correction).
  // Feed-forward: one proximal-gradient step on E_ffn (a linear layer, then ReLU).
  unfold::MMAttentionStep<double> attention(unfold::AttentionEnergy<double>(P), {1.0});
  unfold::FeedForwardStep<double> feedforward(unfold::FeedForwardEnergy<double>(S, b),
                                              {1.0, true});
  const unfold::Layer layer(attention, feedforward);
  const auto stack = unfold::tied(layer, 4);

  const auto result = unfold::run(stack, Y);
  for (const auto& e : result.trace.entries)
    std::printf("layer %2td  %-17s E = %9.5f  (attention %9.5f, feedforward %9.5f)\n",
                e.layer, e.name.c_str(), e.total, e.components[0], e.components[1]);

  const auto report = result.trace.monotonicity();
  std::printf("monotone: %s, increases: %zu\n", report.monotone ? "yes" : "no",
              report.increases);
}
