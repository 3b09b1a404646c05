# The paper's Figures 1 to 4 from paper_figures' CSV files, one panel each.
#
#   gnuplot -e "dir='out'; png='paper_figures.png'" plot.gp

if (!exists("dir")) dir = '.'
if (!exists("png")) png = 'paper_figures.png'

set terminal pngcairo size 1200,1000 font ",11"
set output png
set datafile separator ","
set multiplot layout 2,2

# Figure 1: Apollonius circles; inside C = 0.7 and outside C = 1.5 are the regions.
set title "Fig. 1: Apollonius circles ||y - y_f*|| = C ||y - y_h*||"
set size ratio -1
set key bottom right
plot dir.'/fig1_apollonius.csv' using ($1 == 0.7 ? $2 : NaN):3 with lines lw 2 title "C = 0.7", \
     '' using ($1 == 1.5 ? $2 : NaN):3 with lines lw 2 title "C = 1.5", \
     '+' using (0):(0) every ::0::0 with points pt 7 ps 1.5 title "y_f*", \
     '+' using (2):(1) every ::0::0 with points pt 5 ps 1.5 title "y_h*"
set size noratio

# Figure 2: the alternating path on its two principal components.
set title "Fig. 2: alternating gradient steps, n = 500, d = 128 (PCA)"
set xlabel "PC 1"
set ylabel "PC 2"
set key top right
plot dir.'/fig2_path.csv' using (strcol(1) eq "path" ? $3 : NaN):4 with linespoints pt 7 ps 0.4 \
         title "path", \
     '' using (strcol(1) eq "minimiser" ? $3 : NaN):4 with points pt 3 ps 2.5 lw 2 \
         title "minimiser of h"

# Figure 3: log h - log h_min after every sub-step.
set title "Fig. 3: log h(Y_t) - log h_{min} along the path"
set format y "10^{%T}"
set xlabel "sub-step (two per layer)"
set ylabel "log h - log h_{min}"
set logscale y
plot dir.'/fig3_energy.csv' using 1:($3 > 0 ? $3 : NaN) with lines lw 1.5 notitle
unset logscale y
set format y "%g"

# Figure 4: the regions div(x) >= -kappa.
set title "Fig. 4: div(x) >= -kappa, kappa = 0.2, 0.4, 0.6, 0.8 (black), xi = x - (-1, 0.5)"
set xlabel "x_1"
set ylabel "x_2"
set view map
set size ratio -1
set pm3d at b
set palette rgbformulae 33,13,10
set cblabel "div(x)"
set contour base
set cntrparam levels discrete -0.2, -0.4, -0.6, -0.8
set cntrlabel onecolor
unset surface
unset key
splot dir.'/fig4_divergence.csv' using 1:2:3 with lines lc rgb "black" lw 1.5
unset multiplot
