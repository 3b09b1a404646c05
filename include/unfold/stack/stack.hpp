#pragma once

/// \file
/// The unfolding operator: steps composed into layers, layers into a stack, and a forward pass
/// that records the energy after every step.

#include "../core/concepts.hpp"
#include "../core/trace.hpp"
#include "../core/validate.hpp"
#include "../step/descent_bound.hpp"

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace unfold {

/// A step of a layer: it maps tokens to tokens and names the energy it descends.
///
/// Models publish `Scalar`, and offer `apply(Y, Yout)`, `name()`, `energy()` (an Energy) and
/// `bound(Y)` (the DescentBound at Y).
template <class S>
concept UnfoldingStep =
    requires(const S& s, const ConstMatrixRef<typename S::Scalar>& Y,
             MatrixRef<typename S::Scalar> out) {
      typename S::Scalar;
      s.apply(Y, out);
      { s.name() } -> std::convertible_to<std::string_view>;
      { s.bound(Y) } -> std::same_as<DescentBound<typename S::Scalar>>;
      requires Energy<std::remove_cvref_t<decltype(s.energy())>>;
    };

/// A layer: its steps applied in order. Its energy is the sum of the energies of its steps,
/// one component per step; a paper layer is `Layer(attention step, feed-forward step)` and its
/// energy E_att + E_ffn.
template <UnfoldingStep... Steps>
  requires(sizeof...(Steps) >= 1)
class Layer {
  using First = std::tuple_element_t<0, std::tuple<Steps...>>;

public:
  using Scalar = typename First::Scalar;
  static constexpr std::size_t size = sizeof...(Steps);

  static_assert((std::same_as<typename Steps::Scalar, Scalar> && ...),
                "unfold: the steps of a Layer must share one Scalar type");

  explicit Layer(Steps... steps) : steps_(std::move(steps)...)
  {
    const Eigen::Index d = dim();
    for_each_step([d](std::size_t, const auto& s) {
      if (s.energy().dim() != d)
        detail::fail("Layer", "step '" + std::string(s.name()) + "' works on d = " +
                                  std::to_string(s.energy().dim()) + ", expected d = " +
                                  std::to_string(d));
    });
  }

  Eigen::Index dim() const { return std::get<0>(steps_).energy().dim(); }

  template <std::size_t I>
  const auto& step() const { return std::get<I>(steps_); }

  /// Calls f(index, step) for each step in order.
  template <class F>
  void for_each_step(F&& f) const
  {
    std::size_t i = 0;
    std::apply([&](const auto&... s) { (f(i++, s), ...); }, steps_);
  }

  std::vector<std::string> component_names() const
  {
    std::vector<std::string> names;
    for_each_step([&](std::size_t, const auto& s) { names.emplace_back(s.energy().name()); });
    return names;
  }

  /// The energy of each step at Y, in order, into `out` (resized to `size`).
  void components(const ConstMatrixRef<Scalar>& Y, std::vector<Scalar>& out) const
  {
    out.resize(size);
    for_each_step([&](std::size_t i, const auto& s) { out[i] = s.energy().value(Y); });
  }

private:
  std::tuple<Steps...> steps_;
};

/// Layers applied in order: one layer repeated (weight-tied) or one parameter set per layer.
template <class LayerT>
class Stack {
public:
  using Scalar = typename LayerT::Scalar;

  /// The same layer applied `depth` times.
  static Stack tied(LayerT layer, std::size_t depth)
  {
    if (depth < 1)
      detail::fail("Stack::tied", "depth = 0, expected depth >= 1");
    return Stack({std::move(layer)}, depth, true);
  }

  /// Each layer applied once, in order; all must work on the same width d.
  static Stack untied(std::vector<LayerT> layers)
  {
    if (layers.empty())
      detail::fail("Stack::untied", "layers is empty, expected at least one layer");
    for (std::size_t l = 1; l < layers.size(); ++l)
      if (layers[l].dim() != layers[0].dim())
        detail::fail("Stack::untied", "layers[" + std::to_string(l) + "] works on d = " +
                                          std::to_string(layers[l].dim()) + ", expected d = " +
                                          std::to_string(layers[0].dim()));
    const std::size_t depth = layers.size();
    return Stack(std::move(layers), depth, false);
  }

  std::size_t depth() const { return depth_; }
  bool weight_tied() const { return tied_; }
  Eigen::Index dim() const { return layers_.front().dim(); }

  /// The layer applied at position l (0 <= l < depth).
  const LayerT& layer(std::size_t l) const { return tied_ ? layers_.front() : layers_.at(l); }

private:
  Stack(std::vector<LayerT> layers, std::size_t depth, bool tied)
      : layers_(std::move(layers)), depth_(depth), tied_(tied)
  {
  }

  std::vector<LayerT> layers_;
  std::size_t depth_;
  bool tied_;
};

/// The same layer applied `depth` times: `tied(layer, 12)`.
template <class LayerT>
Stack<LayerT> tied(LayerT layer, std::size_t depth)
{
  return Stack<LayerT>::tied(std::move(layer), depth);
}

/// Each layer applied once, in order.
template <class LayerT>
Stack<LayerT> untied(std::vector<LayerT> layers)
{
  return Stack<LayerT>::untied(std::move(layers));
}

/// What an observer sees after every step.
template <Real Scalar>
struct StepEvent {
  std::size_t layer;
  std::size_t step;
  std::string_view name;

  /// The tokens the step produced.
  const Matrix<Scalar>& tokens;

  /// The trace entry of this step; null when the run records no trace.
  const TraceEntry<Scalar>* entry;
};

template <Real Scalar>
struct RunOptions {
  /// Evaluate every step's energy at the start and after every step.
  bool record_trace = true;

  /// Also record each step's proven step-size bound at its input point (costs one more
  /// weight computation per attention step).
  bool check_bounds = false;

  /// Called after every step, when set.
  std::function<void(const StepEvent<Scalar>&)> observer;
};

template <Real Scalar>
struct StackResult {
  /// The tokens after the last step that ran.
  Matrix<Scalar> tokens;

  Trace<Scalar> trace;

  /// False when a step produced a non-finite token; the run stops there and the trace's last
  /// entry has status non_finite.
  bool completed = true;
};

/// Runs a stack on tokens Y (n x d) and records the trace.
template <class LayerT>
StackResult<typename LayerT::Scalar> run(const Stack<LayerT>& stack,
                                         const ConstMatrixRef<typename LayerT::Scalar>& Y,
                                         const RunOptions<typename LayerT::Scalar>& options = {})
{
  using Scalar = typename LayerT::Scalar;
  detail::require_tokens("run", Y, stack.dim());

  StackResult<Scalar> result;
  Trace<Scalar>& trace = result.trace;
  Matrix<Scalar> current = Y;
  Matrix<Scalar> next(Y.rows(), Y.cols());

  // The energy of the layer at `l`, measured at the current tokens, as a trace entry.
  auto record = [&](std::size_t l, std::ptrdiff_t layer, std::ptrdiff_t step,
                    std::string name) {
    TraceEntry<Scalar> entry;
    entry.layer = layer;
    entry.step = step;
    entry.name = std::move(name);
    entry.energy_index = stack.weight_tied() ? 0 : l;
    stack.layer(l).components(current, entry.components);
    for (Scalar c : entry.components)
      entry.total += c;
    return entry;
  };

  // Steps that keep state between calls (momentum) start every forward pass afresh.
  for (std::size_t l = 0; l < (stack.weight_tied() ? 1 : stack.depth()); ++l)
    stack.layer(l).for_each_step([](std::size_t, const auto& s) {
      if constexpr (requires { s.reset(); })
        s.reset();
    });

  if (options.record_trace) {
    trace.component_names = stack.layer(0).component_names();
    trace.entries.push_back(record(0, -1, -1, "start"));
  }

  for (std::size_t l = 0; l < stack.depth() && result.completed; ++l) {
    if (options.record_trace && l > 0 && !stack.weight_tied())
      trace.entries.push_back(record(l, std::ptrdiff_t(l), -1, "start"));

    stack.layer(l).for_each_step([&](std::size_t k, const auto& s) {
      if (!result.completed)
        return;

      std::optional<DescentBound<Scalar>> bound;
      if (options.check_bounds)
        bound = s.bound(current);

      s.apply(current, next);
      current.swap(next);
      const bool finite = current.allFinite();

      TraceEntry<Scalar>* entry = nullptr;
      if (options.record_trace) {
        if (finite) {
          trace.entries.push_back(record(l, std::ptrdiff_t(l), std::ptrdiff_t(k),
                                         std::string(s.name())));
        } else {
          // The energies are not evaluated at non-finite tokens; the status says why.
          TraceEntry<Scalar> broken;
          broken.layer = std::ptrdiff_t(l);
          broken.step = std::ptrdiff_t(k);
          broken.name = std::string(s.name());
          broken.energy_index = stack.weight_tied() ? 0 : l;
          broken.total = std::numeric_limits<Scalar>::quiet_NaN();
          trace.entries.push_back(std::move(broken));
        }
        entry = &trace.entries.back();
        if (bound) {
          entry->max_step_size = bound->max_step_size;
          entry->bound_holds = bound->holds();
        }
        if (!finite || !std::isfinite(entry->total))
          entry->status = StepStatus::non_finite;
        else if (trace.rose(trace.entries.size() - 1))
          entry->status = StepStatus::energy_rose;
      }
      if (!finite)
        result.completed = false;

      if (options.observer)
        options.observer(StepEvent<Scalar>{l, k, s.name(), current, entry});
    });
  }

  result.tokens = std::move(current);
  return result;
}

}  // namespace unfold
