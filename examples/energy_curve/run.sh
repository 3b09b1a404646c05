#!/usr/bin/env bash
# Installs what is missing (Debian bookworm, as root), builds the energy_curve example, runs it
# on the bundled State of the Union sentences and draws the figure:
#   examples/energy_curve/run.sh [BUILD_DIR]
# Writes BUILD_DIR/energy_curve.csv and BUILD_DIR/energy_curve.png.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-"$root/build-example"}

bash "$root/examples/build.sh" energy_curve "$build"

"$build/examples/energy_curve/energy_curve" --csv "$build/energy_curve.csv"
gnuplot -e "csv='$build/energy_curve.csv'; png='$build/energy_curve.png'" "$here/plot.gp"
echo "drew $build/energy_curve.png"
