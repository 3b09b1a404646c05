#include "fixtures.hpp"
#include "unfold/io/npy.hpp"
#include "unfold/reference/encoder.hpp"
#include "unfold/reference/feedforward.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using unfold::Matrix;
using unfold::RowVector;
using namespace unfold::reference;
using Catch::Matchers::Contains;
using unfold::test::fixture_path;
using unfold::test::has_file;
using unfold::test::load;
using unfold::test::load_int;
using unfold::test::load_stack;
using unfold::test::require_close;
template <class Scalar>
using Tolerance = unfold::test::TorchTolerance<Scalar>;

template <class Scalar>
LayerNorm<Scalar> load_norm(const std::string& name, const std::string& prefix)
{
  LayerNorm<Scalar> norm;
  norm.gain = load<Scalar>(name, prefix + "weight");
  norm.bias = load<Scalar>(name, prefix + "bias");
  return norm;
}

// Layer `index` of a fixture, from PyTorch's parameter names under the prefix "layer<index>_".
template <class Scalar>
EncoderLayer<Scalar> load_layer(const std::string& name, int index)
{
  const std::string p = "layer" + std::to_string(index) + "_";
  const auto activation = load_int(name, "activation") == 0 ? Activation::relu
                                                            : Activation::gelu_erf;
  EncoderLayer<Scalar> layer;
  layer.attention = attention_from_torch<Scalar>(
      load<Scalar>(name, p + "in_proj_weight"), load<Scalar>(name, p + "in_proj_bias"),
      load<Scalar>(name, p + "out_proj_weight"), load<Scalar>(name, p + "out_proj_bias"),
      Eigen::Index(load_int(name, "heads")));
  layer.feed_forward = feed_forward_from_torch<Scalar>(
      load<Scalar>(name, p + "linear1_weight"), load<Scalar>(name, p + "linear1_bias"),
      load<Scalar>(name, p + "linear2_weight"), load<Scalar>(name, p + "linear2_bias"),
      activation);
  layer.norm1 = load_norm<Scalar>(name, p + "norm1_");
  layer.norm2 = load_norm<Scalar>(name, p + "norm2_");
  layer.norm_first = unfold::io::read_npy_matrix<bool>(fixture_path(name, "norm_first"))(0, 0);
  return layer;
}

// src_mask (n x n) and the row of src_key_padding_mask (N x n) for each sequence.
template <class Scalar>
std::vector<Masks<Scalar>> load_masks(const std::string& name, std::size_t batch)
{
  std::vector<Masks<Scalar>> masks(batch);
  for (std::size_t b = 0; b < batch; ++b) {
    if (has_file(name, "key_padding_mask"))
      masks[b].key_padding = KeyPaddingMask(
          unfold::io::read_npy_matrix<bool>(fixture_path(name, "key_padding_mask"))
              .row(Eigen::Index(b)));
    if (has_file(name, "attn_mask"))
      masks[b].attention =
          AttentionMask(unfold::io::read_npy_matrix<bool>(fixture_path(name, "attn_mask")));
  }
  return masks;
}

template <class Scalar>
FeedForward<Scalar> small_feed_forward(Activation activation)
{
  FeedForward<Scalar> p;
  p.W1.resize(2, 3);
  p.W1 << 1, -1, Scalar(0.5), 2, 0, -1;
  p.b1.resize(3);
  p.b1 << Scalar(0.1), Scalar(-0.2), 0;
  p.W2.resize(3, 2);
  p.W2 << 1, 0, 0, 1, 1, 1;
  p.b2.resize(2);
  p.b2 << Scalar(0.5), Scalar(-0.5);
  p.activation = activation;
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Activations and the feed-forward block

TEMPLATE_TEST_CASE("GELU at -2 takes its erf and tanh values", "[feedforward][gelu]", float,
                   double)
{
  using Scalar = TestType;
  const double tol = std::is_same_v<Scalar, float> ? 1e-8 : 1e-11;
  CHECK(double(activate(Activation::gelu_erf, Scalar(-2))) ==
        Approx(-0.0455002639).margin(tol));
  CHECK(double(activate(Activation::gelu_tanh, Scalar(-2))) ==
        Approx(-0.0454023059).margin(tol));
  CHECK(activate(Activation::relu, Scalar(-2)) == Scalar(0));
  CHECK(activate(Activation::relu, Scalar(3)) == Scalar(3));
  CHECK(activate(Activation::identity, Scalar(-2)) == Scalar(-2));
}

TEMPLATE_TEST_CASE("GELU matches torch.nn.functional.gelu both ways", "[feedforward][fixture]",
                   float, double)
{
  using Scalar = TestType;
  const Matrix<Scalar> x = load<Scalar>("gelu", "input");
  const std::string tag = Tolerance<Scalar>::tag;
  INFO("erf (" << tag << ")");
  require_close(activate(Activation::gelu_erf, x),
                unfold::io::read_npy_matrix<Scalar>(fixture_path("gelu", "output_erf_" + tag)));
  INFO("tanh (" << tag << ")");
  require_close(activate(Activation::gelu_tanh, x),
                unfold::io::read_npy_matrix<Scalar>(fixture_path("gelu", "output_tanh_" + tag)));
}

TEMPLATE_TEST_CASE("feed_forward computes act(Y W1 + b1) W2 + b2 + residual_weight Y",
                   "[feedforward]", float, double)
{
  using Scalar = TestType;
  Matrix<Scalar> Y(2, 2);
  Y << 1, 2, Scalar(-0.5), Scalar(0.25);
  for (const Activation a : {Activation::identity, Activation::relu, Activation::gelu_erf,
                             Activation::gelu_tanh}) {
    FeedForward<Scalar> p = small_feed_forward<Scalar>(a);
    p.residual_weight = Scalar(0.75);
    Matrix<Scalar> hidden = (Y * p.W1).rowwise() + p.b1;
    hidden = hidden.unaryExpr([a](Scalar v) { return activate(a, v); });
    const Matrix<Scalar> expected =
        ((hidden * p.W2).rowwise() + p.b2) + Scalar(0.75) * Y;
    REQUIRE((feed_forward<Scalar>(Y, p) - expected).cwiseAbs().maxCoeff() <=
            8 * std::numeric_limits<Scalar>::epsilon());
  }

  // Identity activation without biases is the linear map Y W1 W2.
  FeedForward<Scalar> linear = small_feed_forward<Scalar>(Activation::identity);
  linear.b1.resize(0);
  linear.b2.resize(0);
  REQUIRE((feed_forward<Scalar>(Y, linear) - Y * linear.W1 * linear.W2).cwiseAbs().maxCoeff() <=
          8 * std::numeric_limits<Scalar>::epsilon());
}

TEST_CASE("feed_forward_from_torch transposes the nn.Linear weights", "[feedforward]")
{
  const FeedForward<double> p = small_feed_forward<double>(Activation::relu);
  const FeedForward<double> q = feed_forward_from_torch<double>(
      p.W1.transpose(), p.b1, p.W2.transpose(), p.b2, Activation::relu);
  REQUIRE(q.W1 == p.W1);
  REQUIRE(q.W2 == p.W2);
  REQUIRE(q.b1 == p.b1);
  REQUIRE(q.b2 == p.b2);
}

TEST_CASE("feed_forward rejects bad arguments, naming function, argument and shapes",
          "[feedforward][errors]")
{
  FeedForward<double> p = small_feed_forward<double>(Activation::relu);
  const Matrix<double> Y = Matrix<double>::Random(4, 2);
  REQUIRE_THROWS_WITH(feed_forward<double>(Matrix<double>::Zero(4, 3), p),
                      Contains("unfold::reference::feed_forward") &&
                          Contains("Y has 3 columns, expected rows of W1 (d) = 2"));
  p.W2 = Matrix<double>::Zero(2, 2);
  REQUIRE_THROWS_WITH(feed_forward<double>(Y, p),
                      Contains("W2 has 2 rows, expected columns of W1 (f) = 3"));
  p = small_feed_forward<double>(Activation::relu);
  p.b1 = RowVector<double>::Zero(2);
  REQUIRE_THROWS_WITH(feed_forward<double>(Y, p), Contains("b1 is 1 x 2, expected 1 x 3"));
  p = small_feed_forward<double>(Activation::relu);
  p.W2 = Matrix<double>::Zero(3, 5);
  p.b2.resize(0);
  p.residual_weight = 1;
  REQUIRE_THROWS_WITH(feed_forward<double>(Y, p),
                      Contains("W2 has 5 columns, expected rows of W1 (d, for the residual)"));
  p = small_feed_forward<double>(Activation::relu);
  Matrix<double> bad = Y;
  bad(3, 0) = std::nan("");
  REQUIRE_THROWS_WITH(feed_forward<double>(bad, p), Contains("Y (4 x 2) has a non-finite"));
}

// ---------------------------------------------------------------------------------------------
// Encoder layers and stacks against PyTorch

TEMPLATE_TEST_CASE("encoder_layer and encoder match torch.nn.TransformerEncoder[Layer]",
                   "[encoder][fixture]", float, double)
{
  using Scalar = TestType;
  for (const std::string name :
       {"enc_post_relu", "enc_post_gelu_kpm", "enc_pre_relu_causal", "enc_pre_gelu_dh1_n1",
        "stack2_post_relu_final", "stack2_pre_gelu_final", "stack2_post_gelu"}) {
    INFO("fixture " << name << " (" << Tolerance<Scalar>::tag << ")");
    const std::vector<Matrix<Scalar>> input = load_stack<Scalar>(name, "input");
    const std::vector<Matrix<Scalar>> want = unfold::io::read_npy_stack<Scalar>(
        fixture_path(name, std::string("output_") + Tolerance<Scalar>::tag));
    const std::vector<Masks<Scalar>> masks = load_masks<Scalar>(name, input.size());

    Encoder<Scalar> stack;
    for (int l = 0; l < int(load_int(name, "num_layers")); ++l)
      stack.layers.push_back(load_layer<Scalar>(name, l));
    if (has_file(name, "final_norm_weight"))
      stack.final_norm = load_norm<Scalar>(name, "final_norm_");

    const std::vector<Matrix<Scalar>> out =
        stack.layers.size() == 1 ? encoder_layer(input, stack.layers[0], masks)
                                 : encoder(input, stack, masks);
    REQUIRE(out.size() == want.size());
    for (std::size_t b = 0; b < out.size(); ++b) {
      INFO("sequence " << b);
      require_close(out[b], want[b]);
      REQUIRE(encoder<Scalar>(input[b], stack, masks[b]) == out[b]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Structure and errors

TEMPLATE_TEST_CASE("an encoder stack of one layer without final norm is that layer",
                   "[encoder]", float, double)
{
  using Scalar = TestType;
  EncoderLayer<Scalar> layer = load_layer<Scalar>("enc_post_relu", 0);
  const Matrix<Scalar> Y = load_stack<Scalar>("enc_post_relu", "input")[0];
  Encoder<Scalar> stack;
  stack.layers = {layer};
  REQUIRE(encoder<Scalar>(Y, stack) == encoder_layer<Scalar>(Y, layer));

  // Pre-norm: x + SA(LN1(x)), then x + FF(LN2(x)), composed from the reference parts.
  layer.norm_first = true;
  Matrix<Scalar> x = Y;
  x += self_attention<Scalar>(layer_norm<Scalar>(x, layer.norm1), layer.attention);
  x += feed_forward<Scalar>(layer_norm<Scalar>(x, layer.norm2), layer.feed_forward);
  REQUIRE(encoder_layer<Scalar>(Y, layer) == x);
}

TEST_CASE("encoder_layer and encoder reject bad arguments, naming what is wrong",
          "[encoder][errors]")
{
  EncoderLayer<double> layer = load_layer<double>("enc_post_relu", 0);
  const Matrix<double> Y = load_stack<double>("enc_post_relu", "input")[0];

  SECTION("a block with its own residual")
  {
    layer.attention.residual_weight = 0.5;
    REQUIRE_THROWS_WITH(encoder_layer<double>(Y, layer),
                        Contains("unfold::reference::encoder_layer") &&
                            Contains("layer.attention.residual_weight"));
    layer.attention.residual_weight = 0;
    layer.feed_forward.residual_weight = 1;
    Encoder<double> stack;
    stack.layers = {layer, layer};
    REQUIRE_THROWS_WITH(encoder<double>(Y, stack),
                        Contains("unfold::reference::encoder") &&
                            Contains("stack.layers[0].feed_forward.residual_weight"));
  }

  SECTION("tokens of the wrong width")
  {
    REQUIRE_THROWS_WITH(encoder_layer<double>(Matrix<double>::Zero(3, 5), layer),
                        Contains("encoder_layer") && Contains("Y has 5 columns, expected d = 8"));
  }

  SECTION("a feed-forward block that does not map d to d")
  {
    layer.feed_forward.W2 = Matrix<double>::Zero(16, 4);
    layer.feed_forward.b2.resize(0);
    REQUIRE_THROWS_WITH(encoder_layer<double>(Y, layer),
                        Contains("layer.feed_forward.W2 has 4 columns, expected rows of W_Q "
                                 "(d) = 8"));
  }

  SECTION("a mask of the wrong size and a mask list of the wrong length")
  {
    Masks<double> masks;
    masks.key_padding = KeyPaddingMask{false, true};
    REQUIRE_THROWS_WITH(encoder_layer<double>(Y, layer, masks),
                        Contains("masks.key_padding has 2 entries, expected m (rows of key) = 6"));
    const std::vector<Matrix<double>> batch = {Y, Y};
    REQUIRE_THROWS_WITH(encoder_layer(batch, layer, std::vector<Masks<double>>(1)),
                        Contains("masks has 1 entries, expected the batch size 2"));
  }

  SECTION("an empty stack")
  {
    REQUIRE_THROWS_WITH(encoder<double>(Y, Encoder<double>{}),
                        Contains("stack.layers is empty"));
  }
}
