#!/usr/bin/env bash
# Installs what is missing (Debian bookworm, as root), builds energy_families, runs every
# energy family on the bundled sentences and draws the figure:
#   examples/energy_families/run.sh [BUILD_DIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-"$root/build-example"}

bash "$root/examples/build.sh" energy_families "$build"

"$build/examples/energy_families/energy_families" --csv "$build/energy_families.csv"
gnuplot -e "csv='$build/energy_families.csv'; png='$build/energy_families.png'" "$here/plot.gp"
echo "drew $build/energy_families.png"
