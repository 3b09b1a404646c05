#pragma once

/// \file
/// The record of a forward pass: the energy before the first layer and after every step.

#include "types.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace unfold {

/// The numerical outcome of one step, as data (never an exception).
enum class StepStatus {
  ok,           ///< finite output, energy did not rise
  energy_rose,  ///< finite output, the traced energy rose beyond the rounding tolerance
  non_finite    ///< the step produced a non-finite token or energy from finite input
};

/// One point of a trace.
template <Real Scalar>
struct TraceEntry {
  /// Index of the layer application (0-based; -1 for the starting point).
  std::ptrdiff_t layer = -1;

  /// Index of the step inside its layer (-1 for the start of a layer).
  std::ptrdiff_t step = -1;

  /// Name of the step that produced this point ("start" for a starting point).
  std::string name;

  /// Index of the energy this entry is measured in; entries are comparable only when it is
  /// the same (a weight-tied stack has one energy, an untied stack one per layer).
  std::size_t energy_index = 0;

  /// The total energy and each of its components (one per step of the layer), in order.
  Scalar total = 0;
  std::vector<Scalar> components;

  StepStatus status = StepStatus::ok;

  /// When the run was asked to check bounds: the proven step-size bound of the step at its
  /// input point, and whether the step size in use was inside it.
  std::optional<Scalar> max_step_size;
  std::optional<bool> bound_holds;
};

/// How monotone a trace is.
template <Real Scalar>
struct Monotonicity {
  /// No entry rose above its predecessor (in the same energy) beyond the tolerance.
  bool monotone = true;

  /// Index into Trace::entries of the first entry that rose, if any.
  std::optional<std::size_t> first_increase;

  /// Number of entries that rose.
  std::size_t increases = 0;

  /// Largest rise E(next) - E(previous), and that rise divided by the range max E - min E of
  /// the trace (0 when the range is 0).
  Scalar largest_increase = 0;
  Scalar largest_relative_increase = 0;
};

/// The energies a forward pass went through.
template <Real Scalar>
struct Trace {
  /// Names of the components of `TraceEntry::components`.
  std::vector<std::string> component_names;

  std::vector<TraceEntry<Scalar>> entries;

  /// Relative tolerance below which a rise counts as rounding: a rise counts when
  /// E(next) - E(previous) > tolerance * scale, where scale is the largest of |E| and of the
  /// sum of the components' magnitudes at the two entries. The second matters when the
  /// components nearly cancel: the rounding error of a sum follows its terms, not its value.
  static constexpr Scalar default_tolerance()
  {
    return Scalar(64) * std::numeric_limits<Scalar>::epsilon();
  }

  /// Whether entry `i` rose above entry `i - 1`, both in the same energy.
  bool rose(std::size_t i, Scalar tolerance = default_tolerance()) const
  {
    return i > 0 && rose_between(i - 1, i, tolerance);
  }

  /// Whether entry `later` is above entry `earlier` beyond rounding, both in the same energy.
  bool rose_between(std::size_t earlier, std::size_t later,
                    Scalar tolerance = default_tolerance()) const
  {
    const TraceEntry<Scalar>& before = entries.at(earlier);
    const TraceEntry<Scalar>& after = entries.at(later);
    if (before.energy_index != after.energy_index)
      return false;
    const Scalar scale = std::max({magnitude(before), magnitude(after),
                                   std::numeric_limits<Scalar>::min()});
    return after.total - before.total > tolerance * scale;
  }

  Monotonicity<Scalar> monotonicity(Scalar tolerance = default_tolerance()) const
  {
    Monotonicity<Scalar> report;
    if (entries.empty())
      return report;

    const auto [lo, hi] = std::minmax_element(
        entries.begin(), entries.end(), [](const auto& a, const auto& b) {
          return a.total < b.total;
        });
    const Scalar range = hi->total - lo->total;

    for (std::size_t i = 1; i < entries.size(); ++i) {
      if (!rose(i, tolerance))
        continue;
      const Scalar rise = entries[i].total - entries[i - 1].total;
      report.monotone = false;
      ++report.increases;
      if (!report.first_increase)
        report.first_increase = i;
      report.largest_increase = std::max(report.largest_increase, rise);
    }
    if (range > Scalar(0))
      report.largest_relative_increase = report.largest_increase / range;
    return report;
  }

  /// Indices into `entries` of the start and of the last entry of each layer application:
  /// L + 1 indices for a stack of L layers.
  std::vector<std::size_t> layer_ends() const
  {
    std::vector<std::size_t> ends;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const bool last_of_layer =
          i + 1 == entries.size() || entries[i + 1].layer != entries[i].layer;
      if (i == 0 || (entries[i].layer >= 0 && last_of_layer))
        ends.push_back(i);
    }
    return ends;
  }

  /// The total energy at the entries of layer_ends(): the start and after each layer (for an
  /// untied stack each is measured in the energy of the layer just run, the first in that of
  /// layer 0).
  std::vector<Scalar> layer_totals() const
  {
    std::vector<Scalar> totals;
    for (std::size_t i : layer_ends())
      totals.push_back(entries[i].total);
    return totals;
  }

private:
  static Scalar magnitude(const TraceEntry<Scalar>& entry)
  {
    Scalar sum = 0;
    for (Scalar c : entry.components)
      sum += std::abs(c);
    return std::max(std::abs(entry.total), sum);
  }
};

}  // namespace unfold
