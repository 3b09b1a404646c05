// Must not compile: a type without a gradient used where an Energy is required. The test
// checks that the compiler's message names the missing member.
#include <unfold/unfold.hpp>

struct ValueOnly {
  using Scalar = double;
  double value(const unfold::ConstMatrixRef<double>&) const { return 0; }
  Eigen::Index dim() const { return 1; }
};

static_assert(unfold::check_energy<ValueOnly>());

int main() {}
