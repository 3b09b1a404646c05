// The paper's model: the consistent variant descends on every bundled sentence; the authors'
// variant is reproduced as MATH.md section 4 describes and its increases are reported.

#include "helpers.hpp"

#include <unfold/io/glove.hpp>

#include <cmath>
#include <limits>

using namespace unfold;
using unfold::test::random_tokens;

namespace {

struct Corpus {
  std::vector<Matrix<double>> sentences;
};

const Corpus& bundled_corpus()
{
  static const Corpus corpus = [] {
    const std::string dir = UNFOLD_DATA_DIR;
    const auto vectors = io::WordVectors<double>::load(dir + "/glove_sotu_100d.txt");
    Corpus c;
    for (const auto& sentence : io::load_sentences(dir + "/sotu_sentences.tsv"))
      c.sentences.push_back(io::embed(vectors, sentence).tokens);
    return c;
  }();
  return corpus;
}

}  // namespace

TEMPLATE_TEST_CASE("the consistent 12-layer stack descends on every bundled sentence",
                   "[compat][data]", float, double)
{
  using Scalar = TestType;
  const auto& corpus = bundled_corpus();
  REQUIRE(corpus.sentences.size() == 240);
  const auto weights = compat::PaperWeights<Scalar>::xavier(100, 2022);

  for (bool relu : {false, true}) {
    const auto stack =
        Stack<compat::ConsistentLayer<Scalar>>::tied(compat::consistent_layer(weights, relu), 12);
    std::size_t monotone = 0;
    for (std::size_t s = 0; s < corpus.sentences.size(); ++s) {
      const auto result = run(stack, Matrix<Scalar>(corpus.sentences[s].cast<Scalar>()));
      const auto report = result.trace.monotonicity();
      INFO("relu " << relu << " sentence " << s << " largest increase "
                   << report.largest_increase);
      CHECK(report.monotone);
      monotone += report.monotone ? 1 : 0;
    }
    CHECK(monotone == corpus.sentences.size());
  }
}

TEMPLATE_TEST_CASE("the authors' stack records its increases instead of hiding them",
                   "[compat][data]", float, double)
{
  using Scalar = TestType;
  const auto& corpus = bundled_corpus();
  const auto weights = compat::PaperWeights<Scalar>::xavier(100, 2022);
  const auto stack =
      Stack<compat::AuthorsLayer<Scalar>>::tied(compat::authors_layer(weights, true), 12);

  std::size_t with_increase = 0, increases = 0;
  Scalar largest_relative = 0;
  for (const auto& tokens : corpus.sentences) {
    const auto result = run(stack, Matrix<Scalar>(tokens.cast<Scalar>()));
    const auto report = result.trace.monotonicity();
    with_increase += report.monotone ? 0 : 1;
    increases += report.increases;
    largest_relative = std::max(largest_relative, report.largest_relative_increase);

    // Each flagged entry carries the status, and only flagged entries do.
    std::size_t flagged = 0;
    for (const auto& entry : result.trace.entries)
      flagged += entry.status == StepStatus::energy_rose ? 1 : 0;
    CHECK(flagged == report.increases);
  }
  INFO("sentences with an increase " << with_increase << ", increases " << increases
                                     << ", largest relative increase " << largest_relative);
  CHECK(with_increase > 0);
  CHECK(largest_relative > Scalar(0));
  CHECK(largest_relative < Scalar(0.05));
}

TEMPLATE_TEST_CASE("the authors' layer is the model of MATH.md section 4", "[compat]", float,
                   double)
{
  using Scalar = TestType;
  // Entries and eigenvalues of a few units, a few roundings apart: 64 ulps of 1.
  const Scalar tol = 64 * std::numeric_limits<Scalar>::epsilon();
  const Eigen::Index d = 6, n = 5;
  const auto w = compat::PaperWeights<Scalar>::xavier(d, 7);
  const auto layer = compat::authors_layer(w, true);
  const Matrix<Scalar> Y = random_tokens<Scalar>(n, d, 8);

  // Energy: P = W, lambda = 1. Forward: plain softmax with the metric W^T W, no residual.
  const auto& attention = layer.template step<0>();
  CHECK(attention.energy().factor() == w.W);
  CHECK(attention.energy().lambda() == Scalar(1));
  Matrix<Scalar> out(n, d);
  attention.apply(Y, out);
  Matrix<Scalar> logits = Y * w.W.transpose() * w.W * Y.transpose();
  Matrix<Scalar> A = (logits.colwise() - logits.rowwise().maxCoeff()).array().exp();
  A = A.array().colwise() / A.rowwise().sum().array();
  CHECK((out - A * Y).cwiseAbs().maxCoeff() <= tol);

  // Feed-forward: S = clamp(W_F W_F^T, 0, 0.95), forward max(0, Y(-S) + 1 b).
  const Matrix<Scalar>& S = layer.template step<1>().energy().weight();
  const Eigen::SelfAdjointEigenSolver<Matrix<Scalar>> eigen(S);
  CHECK(eigen.eigenvalues().minCoeff() >= -tol);
  CHECK(eigen.eigenvalues().maxCoeff() <= Scalar(0.95) + tol);
  layer.template step<1>().apply(Y, out);
  Matrix<Scalar> expected = -Y * S;
  expected.rowwise() += w.b;
  CHECK((out - expected.cwiseMax(Scalar(0))).cwiseAbs().maxCoeff() <= tol);

  // The consistent layer: the Jacobi MM step with P = W and lambda = 0, the same S.
  const auto consistent = compat::consistent_layer(w, true);
  CHECK(consistent.template step<0>().energy().lambda() == Scalar(0));
  CHECK(consistent.template step<0>().energy().factor() == w.W);
  CHECK(consistent.template step<0>().sweep() == Sweep::jacobi);
  CHECK(consistent.template step<1>().energy().weight() == S);
}

TEMPLATE_TEST_CASE("Xavier-normal weights have variance 2 / (fan_in + fan_out)", "[compat][init]",
                   float, double)
{
  using Scalar = TestType;
  const auto w = compat::PaperWeights<Scalar>::xavier(100, 1);
  const double expected = 2.0 / 200.0;
  const double variance = double(w.W.squaredNorm()) / double(w.W.size());
  INFO("sample variance " << variance << ", expected " << expected);
  CHECK(variance == Approx(expected).epsilon(0.05));
  CHECK(double(w.b.squaredNorm()) / 100.0 == Approx(2.0 / 101.0).epsilon(0.35));

  // The same seed gives the same weights; another seed other weights.
  CHECK(compat::PaperWeights<Scalar>::xavier(100, 1).W == w.W);
  CHECK(compat::PaperWeights<Scalar>::xavier(100, 2).W != w.W);
}
