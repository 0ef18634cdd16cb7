# SPDX-License-Identifier: MIT
# Documentation installed and shipped (the ABI, configuration and backend
# guides are listed with libshardbound in plugin/local.mk).
dist_doc_DATA += docs/verification.md docs/benchmarks.md docs/bench-cpu.md \
	docs/mnist-fc-results.md docs/vnncomp-oval21-results.md \
	docs/memory-vs-ranks.png docs/bab-vs-ranks.png docs/fuzzing.md
