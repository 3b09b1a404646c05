#pragma once

/// \file
/// The umbrella header: everything a user of unfold needs.

#include "version.hpp"

#include "core/concepts.hpp"
#include "core/random.hpp"
#include "core/trace.hpp"
#include "core/types.hpp"

#include "energy/attention.hpp"
#include "energy/causal_attention.hpp"
#include "energy/crate.hpp"
#include "energy/energy_transformer.hpp"
#include "energy/feedforward.hpp"
#include "energy/hopfield.hpp"
#include "energy/indicator.hpp"
#include "energy/kernels.hpp"
#include "energy/multi_head.hpp"
#include "energy/spectral_clamp.hpp"
#include "energy/squared_norm.hpp"
#include "energy/sum.hpp"
#include "energy/zero.hpp"

#include "step/causal_attention.hpp"
#include "step/combinators.hpp"
#include "step/crate.hpp"
#include "step/descent_bound.hpp"
#include "step/energy_transformer.hpp"
#include "step/feedforward.hpp"
#include "step/gradient.hpp"
#include "step/hopfield.hpp"
#include "step/mm_attention.hpp"
#include "step/multi_head.hpp"
#include "step/projection.hpp"
#include "step/softmax_attention.hpp"

#include "stack/alternation.hpp"
#include "stack/stack.hpp"

#include "compat/authors.hpp"
