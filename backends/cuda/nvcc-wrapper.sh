#!/bin/sh
# SPDX-License-Identifier: MIT
# Lets libtool (and depcomp-style rules) drive nvcc: gcc flags that nvcc does
# not take itself are handed to the host compiler with -Xcompiler.
# Usage: nvcc-wrapper.sh NVCC [gcc-style arguments...]
if test $# -lt 1; then
  echo "usage: $0 NVCC [arguments...]" >&2
  exit 2
fi
nvcc=$1
shift
# Rebuild the argument list in place so that arguments with spaces survive.
n=$#
i=0
while test $i -lt $n; do
  arg=$1
  shift
  i=`expr $i + 1`
  case $arg in
    -Wno-deprecated-gpu-targets|-Wno-deprecated-declarations|-Wreorder|-Werror=*)
      # nvcc's own warning switches.
      set -- "$@" "$arg" ;;
    -ftz=*|-fmad=*)
      # nvcc's own -f options.
      set -- "$@" "$arg" ;;
    -f*|-pthread|-W[a-z]*)
      # Host-compiler only: nvcc would reject them or read -W as its own.
      set -- "$@" -Xcompiler "$arg" ;;
    -Wl,*)
      set -- "$@" -Xlinker "`echo "$arg" | sed 's/^-Wl,//'`" ;;
    -MD|-MMD|-MP)
      set -- "$@" "$arg" ;;
    -MT|-MF|-MQ)
      # nvcc spells these as separate-argument options too.
      if test $i -ge $n; then
        echo "$0: $arg needs an argument" >&2
        exit 2
      fi
      val=$1
      shift
      i=`expr $i + 1`
      test "x$arg" = x-MQ && arg=-MT
      set -- "$@" "$arg" "$val" ;;
    *)
      set -- "$@" "$arg" ;;
  esac
done
exec "$nvcc" "$@"
