#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs what building and testing shardbound needs on Debian 12 (as root,
# or through sudo when run by another user).
set -e
SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential autoconf automake libtool pkg-config \
  libglib2.0-dev libjson-glib-dev check \
  libprotobuf-c-dev protobuf-c-compiler libopenblas-dev \
  openmpi-bin libopenmpi-dev \
  python3 python3-numpy python3-torch gnuplot-nox help2man \
  clang-14 libclang-rt-14-dev llvm-14 clang-format >/dev/null
# clang-14 with its runtime (libFuzzer, ASan, UBSan) builds the fuzz
# harnesses (make fuzz); llvm-14 brings llvm-symbolizer for readable
# sanitizer stacks. gcc's ASan and UBSan (configure --enable-sanitizers)
# come with build-essential. clang-format (14 on Debian 12) checks the
# layout of the sources (tools/check-format.sh).
# Debian packaging and its check (make check-packaging, run by CI): package
# build tools, dh-python (debian/control's dh-sequence-python3),
# abigail-tools (libshardbound's ABI check), lintian, and mmdebstrap for the
# throw-away root.
$SUDO apt-get install -y -qq --no-install-recommends \
  debhelper dh-python dpkg-dev abigail-tools lintian mmdebstrap mount >/dev/null
