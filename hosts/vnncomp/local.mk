# SPDX-License-Identifier: MIT
# VNN-COMP tool scripts (run from a checkout; shipped in the tarball).
EXTRA_DIST += hosts/vnncomp/install_tool.sh hosts/vnncomp/prepare_instance.sh \
	hosts/vnncomp/run_instance.sh tools/run-mnist-fc.sh tools/run-vnncomp.sh \
	tools/vnncomp-references/README.md tools/vnncomp-references/oval21.csv
