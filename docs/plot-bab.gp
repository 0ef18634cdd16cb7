# SPDX-License-Identifier: MIT
# Branch-and-bound on fsdp: domains per second and per-rank memory against
# the number of ranks (data from tools/bench-bab.sh).
# Usage: gnuplot -e "datafile='bab.dat'; outfile='bab-vs-ranks.png'" plot-bab.gp
set terminal pngcairo size 900,520 noenhanced
set output outfile
set title "Branch-and-bound on fsdp (thread ranks): rate and per-rank memory"
set xlabel "ranks P"
set ylabel "domains per second"
set y2label "MiB per rank"
set xtics (1, 2, 4)
set logscale x 2
set ytics nomirror
set y2tics
set key outside right
set grid
plot datafile index 0 using 1:2 with linespoints lw 2 title "domains/s, batch 64", \
     datafile index 1 using 1:2 with linespoints lw 2 title "domains/s, batch 256", \
     datafile index 0 using 1:4 axes x1y2 with linespoints lw 2 dt 2 title "peak/rank, batch 64", \
     datafile index 1 using 1:4 axes x1y2 with linespoints lw 2 dt 2 title "peak/rank, batch 256", \
     datafile index 1 using 1:3 axes x1y2 with linespoints lw 2 dt 3 title "alpha/rank, batch 256"
