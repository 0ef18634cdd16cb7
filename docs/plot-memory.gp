# SPDX-License-Identifier: MIT
# Per-rank FSDP and TP memory against the number of ranks (data from tools/bench.sh).
# Usage: gnuplot -e "datafile='plot.dat'; outfile='memory-vs-ranks.png'" plot-memory.gp
set terminal pngcairo size 900,520 noenhanced
set output outfile
set title "Per-rank memory vs ranks (CROWN; P = 1 is the cpu backend; dotted: peak RSS of a rank process)"
set xlabel "ranks P"
set ylabel "MiB per rank"
set xtics (1, 2, 4)
set logscale x 2
set key outside right
set grid
plot datafile index 0 using 1:3 with linespoints lw 2 title "wide MLP peak, fsdp", \
     datafile index 2 using 1:3 with linespoints lw 2 title "wide MLP peak, tp", \
     datafile index 0 using 1:2 with linespoints lw 2 dt 2 title "wide MLP baseline, fsdp", \
     datafile index 1 using 1:3 with linespoints lw 2 title "ResNet peak, fsdp", \
     datafile index 3 using 1:3 with linespoints lw 2 title "ResNet peak, tp", \
     datafile index 4 using 1:2 with linespoints lw 2 dt 3 title "wide MLP process RSS, fsdp (mpi)", \
     datafile index 5 using 1:2 with linespoints lw 2 dt 3 title "wide MLP process RSS, tp (mpi)"
