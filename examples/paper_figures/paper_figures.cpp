// paper_figures: the data of the paper's Figures 1 to 4, as CSV files for plot.gp.
//
//   fig1_apollonius.csv   Apollonius circles ||y - y_f*|| = C ||y - y_h*||, C = 0.7 and 1.5
//   fig2_path.csv         alternating gradient steps on two quadratics (n = 500, d = 128),
//                         projected on the path's two principal components, and the minimiser
//   fig3_energy.csv       log h(Y_t) - log h_min along that path, after every sub-step
//   fig4_divergence.csv   div(x) of ReLU steps on a 2-D grid (regions div >= -kappa)
//
//   paper_figures [--out DIR] [--steps T] [--seed S]

#include <unfold/unfold.hpp>

#include <Eigen/Eigenvalues>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <numbers>
#include <stdexcept>
#include <string>

namespace {

using unfold::Matrix;
using unfold::Vector;

std::ofstream open_csv(const std::string& path, const std::string& header)
{
  std::ofstream out(path);
  if (!out)
    throw std::runtime_error("paper_figures: cannot write " + path);
  out << header << '\n' << std::setprecision(10);
  return out;
}

// Figure 1: the two Apollonius circles around y_f* = (0, 0) and y_h* = (2, 1).
void figure_1(const std::string& dir)
{
  Vector<double> y_f(2), y_h(2);
  y_f << 0, 0;
  y_h << 2, 1;
  auto out = open_csv(dir + "/fig1_apollonius.csv", "C,x,y");
  for (double C : {0.7, 1.5}) {
    const auto circle = unfold::apollonius_circle<double>(y_f, y_h, C);
    for (int k = 0; k <= 200; ++k) {
      const double t = 2 * std::numbers::pi * k / 200;
      out << C << ',' << circle.centre(0) + circle.radius * std::cos(t) << ','
          << circle.centre(1) + circle.radius * std::sin(t) << '\n';
    }
    std::cout << "figure 1: C = " << C << ", centre (" << circle.centre(0) << ", "
              << circle.centre(1) << "), radius " << circle.radius << "\n";
  }
}

// Figures 2 and 3: f and g are quadratic feed-forward energies; a layer is a gradient step on
// f, then one on g (Lie-Trotter); the trace records h = f + g after every sub-step.
void figures_2_and_3(const std::string& dir, std::size_t steps, std::uint64_t seed)
{
  const Eigen::Index n = 500, d = 128;
  std::mt19937_64 rng(seed);
  auto random_spd = [&](double lo, double hi) {
    const Matrix<double> A = unfold::normal_matrix<double>(d, d, 1.0, rng);
    return unfold::spectral_clamp(Matrix<double>(A + A.transpose()), lo, hi);
  };
  const unfold::FeedForwardEnergy<double> f(random_spd(-0.5, 3.0),
                                            unfold::normal_matrix<double>(1, d, 2.0, rng));
  const unfold::FeedForwardEnergy<double> g(random_spd(-0.5, 3.0),
                                            unfold::normal_matrix<double>(1, d, 2.0, rng));
  const Matrix<double> Y0 = unfold::normal_matrix<double>(n, d, 3.0, rng);

  // Step size 1 / L_h, where L_h = lambda_max(S_f + S_g + 2 I).
  const Eigen::SelfAdjointEigenSolver<Matrix<double>> sum(f.weight() + g.weight());
  const double L_h = sum.eigenvalues().maxCoeff() + 2;
  const double alpha = 1.0 / L_h;
  const auto layer = unfold::lie_trotter(unfold::GradientStep(f, {alpha}),
                                         unfold::GradientStep(g, {alpha}));

  // Keep the tokens after every layer for the projection.
  std::vector<Matrix<float>> path{Y0.cast<float>()};
  unfold::RunOptions<double> options;
  options.observer = [&](const unfold::StepEvent<double>& e) {
    if (e.step == 1)
      path.push_back(e.tokens.cast<float>());
  };
  const auto result = unfold::run(unfold::tied(layer, steps), Y0, options);

  // Minimiser of h: every row y* = (b_f + b_g) (S_f + S_g + 2 I)^{-1}.
  const Matrix<double> H = f.weight() + g.weight() + 2 * Matrix<double>::Identity(d, d);
  const unfold::RowVector<double> y_star =
      H.ldlt().solve((f.bias() + g.bias()).transpose()).transpose();
  const Matrix<double> minimiser = Matrix<double>::Ones(n, 1) * y_star;
  const double h_star = f.value(minimiser) + g.value(minimiser);

  // Principal components of the path: the path points are the columns of X (n d x m),
  // centred, and the components come from the small m x m Gram matrix X^T X.
  const Eigen::Index m = Eigen::Index(path.size());
  Matrix<double> X(n * d, m);
  for (Eigen::Index i = 0; i < m; ++i)
    X.col(i) = Eigen::Map<const Eigen::VectorXf>(path[std::size_t(i)].data(), n * d)
                   .cast<double>();
  const Vector<double> mean = X.rowwise().mean();
  X.colwise() -= mean;
  const Matrix<double> gram = X.transpose() * X;
  const Eigen::SelfAdjointEigenSolver<Matrix<double>> pca(gram);

  // Unit directions in token space along the two largest components.
  Vector<double> c1 = X * pca.eigenvectors().col(m - 1);
  Vector<double> c2 = X * pca.eigenvectors().col(m - 2);
  c1.normalize();
  c2.normalize();
  auto project = [&](const Matrix<double>& Y) {
    const Vector<double> y = Eigen::Map<const Vector<double>>(Y.data(), n * d) - mean;
    return std::pair{y.dot(c1), y.dot(c2)};
  };

  auto out2 = open_csv(dir + "/fig2_path.csv", "kind,step,pc1,pc2");
  for (std::size_t i = 0; i < path.size(); ++i) {
    const auto [x, y] = project(path[i].cast<double>());
    out2 << "path," << i << ',' << x << ',' << y << '\n';
  }
  const auto [mx, my] = project(minimiser);
  out2 << "minimiser," << steps << ',' << mx << ',' << my << '\n';

  // Figure 3: h after every sub-step, against the smallest value on the path.
  double h_min = result.trace.entries.front().total;
  for (const auto& e : result.trace.entries)
    h_min = std::min(h_min, e.total);
  auto out3 = open_csv(dir + "/fig3_energy.csv", "substep,h,log_gap");
  for (std::size_t i = 0; i < result.trace.entries.size(); ++i) {
    const double h = result.trace.entries[i].total;
    out3 << i << ',' << h << ',' << std::log(h) - std::log(h_min) << '\n';
  }

  const auto report = result.trace.monotonicity();
  std::cout << "figures 2-3: n = " << n << ", d = " << d << ", " << steps
            << " alternating steps, alpha = 1/L_h = " << alpha << "\n"
            << "  h(Y_0) = " << result.trace.entries.front().total << ", h_min on path = "
            << h_min << ", h(minimiser) = " << h_star << "\n"
            << "  sub-steps that raised h: " << report.increases << " of "
            << result.trace.entries.size() - 1 << " (first at entry "
            << (report.first_increase ? long(*report.first_increase) : -1) << ")\n";
}

// Figure 4: div(x) for ReLU steps xi = alpha grad h(x) on the grid [0, 3]^2, with
// h(x) = 0.5 ||x - c||^2, c = (-1, 0.5) and alpha = 1, so xi = x - c.
void figure_4(const std::string& dir)
{
  Vector<double> c(2);
  c << -1, 0.5;
  auto out = open_csv(dir + "/fig4_divergence.csv", "x1,x2,div");
  for (int i = 0; i <= 120; ++i) {
    for (int j = 0; j <= 120; ++j) {
      Vector<double> x(2);
      x << 3.0 * i / 120, 3.0 * j / 120;
      out << x(0) << ',' << x(1) << ',' << unfold::relu_divergence<double>(x, x - c) << '\n';
    }
    out << '\n';  // gnuplot reads grid rows separated by blank lines
  }
  std::cout << "figure 4: div(x) on a 121 x 121 grid of [0, 3]^2, steps xi = x - (-1, 0.5)\n";
}

}  // namespace

int main(int argc, char** argv)
try {
  std::string dir = ".";
  std::size_t steps = 200;
  std::uint64_t seed = 2022;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--out")
      dir = argv[i + 1];
    else if (flag == "--steps")
      steps = std::stoul(argv[i + 1]);
    else if (flag == "--seed")
      seed = std::stoull(argv[i + 1]);
    else
      throw std::invalid_argument("paper_figures: unknown option " + flag);
  }
  if (argc % 2 == 0)
    throw std::invalid_argument("paper_figures: every option needs a value");

  figure_1(dir);
  figures_2_and_3(dir, steps, seed);
  figure_4(dir);
  std::cout << "wrote the CSV files to " << dir << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
