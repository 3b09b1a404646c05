# Box plots of E(Y_t) - E_min per layer, one panel per variant, from energy_curve's CSV
# (the layout of the paper's Figure 5).
#
#   gnuplot -e "csv='energy_curve.csv'; png='energy_curve.png'" plot.gp

if (!exists("csv")) csv = 'energy_curve.csv'
if (!exists("png")) png = 'energy_curve.png'

set terminal pngcairo size 1200,850 font ",11"
set output png
set datafile separator ","
set multiplot layout 2,2 title "Energy per layer over 240 State of the Union sentences (GloVe 6B 100-d), E - E_{min}"
set xrange [-0.7:12.7]
set xtics 1
set xlabel "layer t"
set ylabel "E(Y_t) - E_{min}"
set logscale y
set grid ytics
set boxwidth 0.5
set style fill solid 0.35 border -1

# Columns: 1 variant, 2 relu, 3 layer, 4 mean, 5 min, 6 q1, 7 median, 8 q3, 9 max.
# Keep the rows of one variant; others (and the header) become invalid and are skipped.
pick(v, r, col) = (strcol(1) eq v && $2 == r) ? column(col) : NaN
# The log scale cannot show the sentence at E_min itself: clip at a small floor.
clip(x) = x != x ? NaN : (x > 1e-3 ? x : 1e-3)

do for [variant in "consistent authors"] {
  do for [relu = 0:1] {
    set title sprintf("%s, %s", variant, relu ? "with ReLU" : "without ReLU")
    plot csv using 3:(clip(pick(variant, relu, 6))):(clip(pick(variant, relu, 5))):\
             (clip(pick(variant, relu, 9))):(clip(pick(variant, relu, 8))) \
             with candlesticks whiskerbars lc rgb "#3465a4" title "quartiles, min, max", \
         '' using 3:(clip(pick(variant, relu, 7))):(clip(pick(variant, relu, 7))):\
             (clip(pick(variant, relu, 7))):(clip(pick(variant, relu, 7))) \
             with candlesticks lw 2 lc rgb "#cc0000" fs empty border rgb "#cc0000" \
             title "median"
  }
}
unset multiplot
