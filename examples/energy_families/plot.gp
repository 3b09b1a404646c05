# Mean normalised energy (E_t - E_L) / (E_0 - E_L) per step, one line per energy family, from
# energy_families' CSV.
#
#   gnuplot -e "csv='energy_families.csv'; png='energy_families.png'" plot.gp

if (!exists("csv")) csv = 'energy_families.csv'
if (!exists("png")) png = 'energy_families.png'

set terminal pngcairo size 1100,650 font ",11"
set output png
set datafile separator ","
set title "Energy families on 240 State of the Union sentences: mean (E_t - E_L) / (E_0 - E_L)"
set xlabel "step t"
set ylabel "normalised energy"
set key outside right
set grid
set xtics 1

families = "paper_consistent paper_authors log_kernel rational_kernel multi-head_4_x_25 " . \
           "layer_norm_+_MM causal_MM Strang_(attention_|_FFN) heavy_ball_MM_+_FFN " . \
           "modern_Hopfield Energy_Transformer CRATE_(MSSA)"
label(w) = system(sprintf("echo '%s' | tr _ ' '", w))
pick(name) = strcol(1) eq name ? $4 : NaN

# Twelve families, eight default colours: the last four are dashed.
dash(i) = i > 8 ? 2 : 1
plot for [i = 1:words(families)] csv using 2:(pick(label(word(families, i)))) \
     with linespoints lw 2 pt 7 ps 0.6 lc (i) dashtype dash(i) \
     title (label(word(families, i)))
