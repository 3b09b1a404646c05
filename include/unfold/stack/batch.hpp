#pragma once

/// \file
/// A stack run on a batch of sequences over a pool of threads, with results that do not
/// depend on the number of threads.

#include "stack.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace unfold {

/// How run_batch spreads a batch over threads.
struct BatchOptions {
  /// Worker threads; 0 means std::thread::hardware_concurrency() (at least 1). Never more
  /// than there are sequences. 1 runs the batch on the calling thread.
  std::size_t threads = 0;

  /// The number of threads run_batch uses for `sequences` sequences.
  std::size_t workers(std::size_t sequences) const
  {
    std::size_t t = threads;
    if (t == 0)
      t = std::max<std::size_t>(1, std::thread::hardware_concurrency());
    return std::max<std::size_t>(1, std::min(t, sequences));
  }
};

/// Runs `stack` on every sequence of `batch` (each n_b x d; lengths may differ) and returns
/// one StackResult per sequence, in order.
///
/// Each sequence is run from start to end by one thread, with its own copy of the stack (so
/// that steps with state between calls, such as momentum, never share it), by the same code
/// as run(): every result is the same, bit for bit, as `run(stack, batch[b], options)`,
/// whatever the number of threads and whichever thread takes which sequence. Sequences are
/// handed out one at a time, so long and short ones balance.
///
/// `options.observer`, when set, is called for the steps of all sequences, one call at a time
/// (under a lock), in an order that depends on the scheduling.
///
/// Uses std::thread: on platforms whose C library keeps threads apart, link Threads::Threads.
/// An Eigen built to use OpenMP or a multi-threaded BLAS adds its own threads inside each
/// product; set those to one thread when the batch already uses every core.
///
/// \throws std::invalid_argument naming the sequence, before any work starts, when a
/// sequence is empty, has the wrong width or a non-finite entry.
template <class LayerT>
std::vector<StackResult<typename LayerT::Scalar>> run_batch(
    const Stack<LayerT>& stack, const std::vector<Matrix<typename LayerT::Scalar>>& batch,
    const RunOptions<typename LayerT::Scalar>& options = {}, const BatchOptions& threads = {})
{
  using Scalar = typename LayerT::Scalar;
  for (std::size_t b = 0; b < batch.size(); ++b)
    detail::require_tokens("run_batch: batch[" + std::to_string(b) + "]", batch[b],
                           stack.dim());

  std::vector<StackResult<Scalar>> results(batch.size());
  if (batch.empty())
    return results;

  // One observer call at a time, from whichever thread runs the step.
  RunOptions<Scalar> shared = options;
  std::mutex observer_lock;
  if (options.observer)
    shared.observer = [&](const StepEvent<Scalar>& event) {
      const std::lock_guard<std::mutex> hold(observer_lock);
      options.observer(event);
    };

  std::atomic<std::size_t> next{0};
  std::vector<std::exception_ptr> errors(batch.size());
  auto work = [&]() {
    const Stack<LayerT> own = stack;
    for (std::size_t b = next.fetch_add(1); b < batch.size(); b = next.fetch_add(1)) {
      try {
        results[b] = run(own, batch[b], shared);
      } catch (...) {
        errors[b] = std::current_exception();
      }
    }
  };

  const std::size_t workers = threads.workers(batch.size());
  if (workers == 1) {
    work();
  } else {
    // A thread that cannot be started leaves its share to the others.
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    try {
      for (std::size_t t = 1; t < workers; ++t)
        pool.emplace_back(work);
    } catch (const std::system_error&) {
    }
    work();
    for (std::thread& thread : pool)
      thread.join();
  }

  // The first failure in batch order, whatever thread met it.
  for (const std::exception_ptr& error : errors)
    if (error)
      std::rethrow_exception(error);
  return results;
}

}  // namespace unfold
