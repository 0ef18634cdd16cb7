#!/bin/sh
# SPDX-License-Identifier: MIT
# Writes the man page of `shardbound`: help2man over the command's own
# --help and --version, each subcommand's --help as a COMMANDS section, and
# the hand-written sections of shardbound.h2m.in with the installed paths
# filled in. Usage: mkman.sh HELP2MAN SHARDBOUND TEMPLATE OUTPUT VERSION
#                            BACKENDDIR PKGDATADIR DOCDIR
set -e
help2man=$1 cli=$2 template=$3 output=$4 version=$5
backenddir=$6 pkgdatadir=$7 docdir=$8
include=$output.h2m
trap 'rm -f "$include"' EXIT

# Verbatim --help text as roff: backslashes and minus signs escaped, no line
# starting with a control character.
roff_verbatim () {
  sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\\&'/"
}

commands=$("$cli" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF > 1 { print $1 }')
[ -n "$commands" ] || { echo "mkman.sh: no commands in '$cli --help'" >&2; exit 1; }
printf '[COMMANDS]\n' > "$include"
for command in $commands; do
  printf '.SS "shardbound %s"\n.nf\n' "$command" >> "$include"
  # GLib prints the program name, not the command, on its usage line.
  "$cli" "$command" --help \
    | sed -e "s/^  shardbound \[OPTION/  shardbound $command [OPTION/" \
    | roff_verbatim >> "$include"
  printf '.fi\n' >> "$include"
done
sed -e "s|@backenddir@|$backenddir|g" -e "s|@pkgdatadir@|$pkgdatadir|g" \
    -e "s|@docdir@|$docdir|g" "$template" >> "$include"
"$help2man" --no-info --no-discard-stderr --section=1 \
  --name="verify neural networks with provable bounds on pluggable backends" \
  --version-string="$version" --include="$include" --output="$output-t" "$cli"
mv "$output-t" "$output"
