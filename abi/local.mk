# SPDX-License-Identifier: MIT
# The ABI header is installed for backend authors as <shardbound/shardbound.h>.
sbincludedir = $(includedir)/shardbound
sbinclude_HEADERS = abi/shardbound.h
