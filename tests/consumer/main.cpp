// Uses the installed headers: one MM attention step checked against its closed form, then a
// two-layer weight-tied stack whose trace must descend. Prints "consumer ok" or exits 1.

#include <unfold/unfold.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

namespace {

int failures = 0;

void check(bool ok, const char* what)
{
  if (!ok) {
    std::fprintf(stderr, "consumer: FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main()
{
  using Matrix = unfold::Matrix<double>;
  const Eigen::Index n = 6, d = 3;
  std::mt19937_64 rng(11);

  // The headers found are the ones the package was made from.
  check(std::strcmp(UNFOLD_VERSION_STRING, UNFOLD_CONSUMER_PACKAGE_VERSION) == 0,
        "version.hpp matches the package version");

  const Matrix Y = unfold::normal_matrix<double>(n, d, 1.0, rng);
  const Matrix P = unfold::normal_matrix<double>(d, d, 0.5, rng);
  const unfold::AttentionEnergy<double> energy(P);

  // One MM step with alpha = 1 is softmax attention with the key-norm correction:
  // Y+ = A Y, A_ij = softmax_j(z_i . z_j - 0.5 |z_j|^2), Z = Y P.
  Matrix stepped(n, d);
  unfold::mm_attention_step(energy, Y, unfold::StepParams<double>{1.0}, stepped);

  const Matrix Z = Y * P;
  Matrix logits = Z * Z.transpose();
  logits.rowwise() -= 0.5 * Z.rowwise().squaredNorm().transpose();
  Matrix weights = (logits.colwise() - logits.rowwise().maxCoeff()).array().exp().matrix();
  weights.array().colwise() /= weights.rowwise().sum().array();
  const Matrix expected = weights * Y;
  const double error = (stepped - expected).cwiseAbs().maxCoeff();
  std::printf("mm step: max |Y+ - A Y| = %.3e, energy %.6f -> %.6f\n", error, energy.value(Y),
              energy.value(stepped));
  check(error <= 1e-12 * (1.0 + expected.cwiseAbs().maxCoeff()), "MM step equals A Y");
  check(energy.value(stepped) <= energy.value(Y), "the MM step does not raise its energy");

  // Two layers of attention then feed-forward with ReLU, weights tied.
  const Matrix A = unfold::normal_matrix<double>(d, d, 0.5, rng);
  const Matrix S = unfold::spectral_clamp(Matrix(A + A.transpose()), -0.9, 0.9);
  const unfold::RowVector<double> b = unfold::normal_matrix<double>(1, d, 0.5, rng);
  unfold::MMAttentionStep<double> attention(energy, {1.0});
  unfold::FeedForwardStep<double> feedforward(unfold::FeedForwardEnergy<double>(S, b),
                                              {1.0, true});
  const auto stack = unfold::tied(unfold::Layer(attention, feedforward), 2);
  const auto result = unfold::run(stack, Y);

  for (const auto& e : result.trace.entries)
    std::printf("layer %2td  %-17s E = %10.6f\n", e.layer, e.name.c_str(), e.total);
  check(result.completed, "the run completed");
  check(result.trace.entries.size() == 5, "the trace has a start and 2 x 2 steps");
  check(result.trace.monotonicity().monotone, "the trace descends");
  check(result.tokens.rows() == n && result.tokens.cols() == d && result.tokens.allFinite(),
        "the output is n x d and finite");
  check((result.tokens.array() >= 0.0).all(), "the last step is a ReLU");

  if (failures > 0) {
    std::fprintf(stderr, "consumer: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("consumer ok\n");
  return 0;
}
