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
  python3 python3-numpy python3-torch gnuplot-nox >/dev/null
