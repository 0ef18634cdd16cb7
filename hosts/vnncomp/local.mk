# SPDX-License-Identifier: MIT
# VNN-COMP tool scripts: run from a checkout, or installed in
# $(pkgdatadir)/vnncomp where they use the installed command and backends.
vnncompdir = $(pkgdatadir)/vnncomp
dist_vnncomp_SCRIPTS = hosts/vnncomp/install_tool.sh \
	hosts/vnncomp/prepare_instance.sh hosts/vnncomp/run_instance.sh
EXTRA_DIST += tools/run-mnist-fc.sh tools/run-vnncomp.sh \
	tools/vnncomp-references/README.md tools/vnncomp-references/oval21.csv
