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
#include <utility>
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

/// A step that also reports the energy it descends, at its input, as a by-product of the step:
/// `s.apply_and_value(Y, Yout)` does what `s.apply(Y, Yout)` does and returns
/// `s.energy().value(Y)`. run() uses it to fill its trace without evaluating that energy
/// again (MMAttentionStep models it).
template <class S>
concept ReportsEnergy =
    UnfoldingStep<S> && requires(const S& s, const ConstMatrixRef<typename S::Scalar>& Y,
                                 MatrixRef<typename S::Scalar> out) {
      { s.apply_and_value(Y, out) } -> std::convertible_to<typename S::Scalar>;
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

  /// Whether step `k` reports its energy at its input (models ReportsEnergy).
  bool reports_energy(std::size_t k) const
  {
    bool reports = false;
    for_each_step([&](std::size_t i, const auto& s) {
      if (i == k)
        reports = ReportsEnergy<std::remove_cvref_t<decltype(s)>>;
    });
    return reports;
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

/// Where run() records the energy.
enum class TraceGranularity {
  /// Before the first layer and after every step (and, in an untied stack, at the start of
  /// every later layer in that layer's energy).
  every_step,

  /// The entries of every_step at layer ends only: before the first layer, after the last
  /// step of every layer (and the starts of the later layers of an untied stack). With
  /// steps that report their energy (MMAttentionStep) the attention energy at a layer end is
  /// a by-product of the next layer's first step, so this trace costs little more than the
  /// other components' values.
  every_layer
};

template <Real Scalar>
struct RunOptions {
  /// Evaluate every step's energy at the start and after every step (or every layer, see
  /// `granularity`).
  bool record_trace = true;

  /// Also record each step's proven step-size bound at its input point (costs one more
  /// weight computation per attention step).
  bool check_bounds = false;

  /// Called after every step, when set. When the step's trace entry waits for an energy that
  /// the next step reports as a by-product, the call comes once that is known (after the next
  /// step ran, before any later observer call), with the tokens of the step it reports.
  std::function<void(const StepEvent<Scalar>&)> observer;

  /// Where the trace records the energy; every_layer leaves StepEvent::entry null for the
  /// steps that end no layer.
  TraceGranularity granularity = TraceGranularity::every_step;
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
///
/// Each trace entry holds every component at the tokens it describes. A component that the
/// next step reports as a by-product (ReportsEnergy: the energy of that step at its input,
/// which is exactly these tokens) is taken from that step instead of being evaluated again;
/// the others are evaluated. The trace is the same either way, bit for bit, when the step
/// reports what its energy's value() returns.
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
  const bool per_layer = options.granularity == TraceGranularity::every_layer;
  const std::size_t steps = LayerT::size;

  // The latest trace entry may wait for one component, the energy of step `component` of the
  // layer at `energy_layer`, at the current tokens; the next step supplies it when it is that
  // step and reports its energy. `observed` is the step the entry follows, if any, whose
  // observer call waits with it.
  struct Pending {
    std::size_t entry;
    std::size_t component;
    std::size_t energy_layer;
    std::optional<std::pair<std::size_t, std::size_t>> observed;
  };
  std::optional<Pending> pending;

  auto energy_index = [&](std::size_t l) { return stack.weight_tied() ? std::size_t(0) : l; };

  // Completes entry i once all its components are known: the total and the status.
  auto finish = [&](std::size_t i) {
    TraceEntry<Scalar>& entry = trace.entries[i];
    entry.total = 0;
    for (Scalar c : entry.components)
      entry.total += c;
    if (!std::isfinite(entry.total))
      entry.status = StepStatus::non_finite;
    else if (trace.rose(i))
      entry.status = StepStatus::energy_rose;
  };

  auto notify = [&](std::size_t l, std::size_t k, std::string_view name,
                    const TraceEntry<Scalar>* entry) {
    if (options.observer)
      options.observer(StepEvent<Scalar>{l, k, name, current, entry});
  };

  // Completes the entry a pending component was filled into, and makes the observer call
  // that waited with it.
  auto complete = [&](const Pending& p) {
    finish(p.entry);
    if (p.observed) {
      std::string_view name;
      stack.layer(p.observed->first).for_each_step([&](std::size_t j, const auto& s) {
        if (j == p.observed->second)
          name = s.name();
      });
      notify(p.observed->first, p.observed->second, name, &trace.entries[p.entry]);
    }
  };

  // Fills the pending component by evaluating it (no step will report it), then completes.
  auto settle = [&]() {
    if (!pending)
      return;
    const Pending p = *pending;
    pending.reset();
    stack.layer(p.energy_layer).for_each_step([&](std::size_t j, const auto& s) {
      if (j == p.component)
        trace.entries[p.entry].components[j] = s.energy().value(current);
    });
    complete(p);
  };

  // Records an entry at the current tokens in the energy of layer `e`. The component of the
  // step that runs next (`next_layer`, `next_step`) is left to it when it reports its energy
  // in the same energy; returns whether the entry waits.
  auto record = [&](std::size_t e, std::ptrdiff_t layer, std::ptrdiff_t step, std::string name,
                    std::optional<std::pair<std::size_t, std::size_t>> next_step,
                    std::optional<std::pair<std::size_t, std::size_t>> observed) {
    TraceEntry<Scalar> entry;
    entry.layer = layer;
    entry.step = step;
    entry.name = std::move(name);
    entry.energy_index = energy_index(e);
    entry.components.assign(steps, Scalar(0));

    std::optional<std::size_t> deferred;
    if (next_step && energy_index(next_step->first) == energy_index(e) &&
        stack.layer(next_step->first).reports_energy(next_step->second))
      deferred = next_step->second;
    stack.layer(e).for_each_step([&](std::size_t j, const auto& s) {
      if (j != deferred)
        entry.components[j] = s.energy().value(current);
    });
    trace.entries.push_back(std::move(entry));
    if (deferred) {
      pending = Pending{trace.entries.size() - 1, *deferred, e, observed};
      return true;
    }
    finish(trace.entries.size() - 1);
    return false;
  };

  // Steps that keep state between calls (momentum) start every forward pass afresh.
  for (std::size_t l = 0; l < (stack.weight_tied() ? 1 : stack.depth()); ++l)
    stack.layer(l).for_each_step([](std::size_t, const auto& s) {
      if constexpr (requires { s.reset(); })
        s.reset();
    });

  if (options.record_trace) {
    trace.component_names = stack.layer(0).component_names();
    record(0, -1, -1, "start", std::pair<std::size_t, std::size_t>{0, 0}, std::nullopt);
  }

  for (std::size_t l = 0; l < stack.depth() && result.completed; ++l) {
    if (options.record_trace && l > 0 && !stack.weight_tied()) {
      settle();
      record(l, std::ptrdiff_t(l), -1, "start", std::pair<std::size_t, std::size_t>{l, 0},
             std::nullopt);
    }

    stack.layer(l).for_each_step([&](std::size_t k, const auto& s) {
      using Step = std::remove_cvref_t<decltype(s)>;
      if (!result.completed)
        return;

      std::optional<DescentBound<Scalar>> bound;
      if (options.check_bounds)
        bound = s.bound(current);

      // The step, reporting the pending component when it is the one waited for.
      bool supplied = false;
      if constexpr (ReportsEnergy<Step>) {
        if (pending && pending->component == k &&
            energy_index(pending->energy_layer) == energy_index(l)) {
          const Pending p = *pending;
          pending.reset();
          trace.entries[p.entry].components[k] = s.apply_and_value(current, next);
          supplied = true;
          complete(p);
        }
      }
      if (!supplied) {
        settle();
        s.apply(current, next);
      }
      current.swap(next);
      const bool finite = current.allFinite();

      const bool last_of_layer = k + 1 == steps;
      const bool records = options.record_trace && (!per_layer || last_of_layer || !finite);
      TraceEntry<Scalar>* entry = nullptr;
      bool waits = false;
      if (records) {
        if (finite) {
          // The step that runs next, if any.
          std::optional<std::pair<std::size_t, std::size_t>> following;
          if (!last_of_layer)
            following = std::pair<std::size_t, std::size_t>{l, k + 1};
          else if (l + 1 < stack.depth())
            following = std::pair<std::size_t, std::size_t>{l + 1, 0};
          waits = record(l, std::ptrdiff_t(l), std::ptrdiff_t(k), std::string(s.name()),
                         following, std::pair<std::size_t, std::size_t>{l, k});
        } else {
          // The energies are not evaluated at non-finite tokens; the status says why.
          TraceEntry<Scalar> broken;
          broken.layer = std::ptrdiff_t(l);
          broken.step = std::ptrdiff_t(k);
          broken.name = std::string(s.name());
          broken.energy_index = energy_index(l);
          broken.total = std::numeric_limits<Scalar>::quiet_NaN();
          broken.status = StepStatus::non_finite;
          trace.entries.push_back(std::move(broken));
        }
        entry = &trace.entries.back();
        if (bound) {
          entry->max_step_size = bound->max_step_size;
          entry->bound_holds = bound->holds();
        }
      }
      if (!finite)
        result.completed = false;

      if (!waits)
        notify(l, k, s.name(), entry);
    });
  }
  settle();

  result.tokens = std::move(current);
  return result;
}

}  // namespace unfold
