#!/usr/bin/env bash
# Fetches real Chinese and Japanese text for the tokenizer-gap benchmark: the translated man
# pages of the Debian packages manpages-zh and manpages-ja (technical prose mixed with option
# names, as users paste it), with the roff markup removed. Not needed by the tests.
# Writes .models/corpus/zh_CN.txt and .models/corpus/ja.txt. Usage: .ci/fetch-cjk-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=.models/corpus
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A fixed set of pages both packages translate, so the figure is reproducible.
pages=(ls cp mv rm mkdir chmod chown find grep tar ps kill du df)
(cd "$tmp" && apt-get download manpages-zh manpages-ja >/dev/null 2>&1)
for pkg in zh ja; do
  dpkg-deb -x "$tmp"/manpages-"$pkg"_*.deb "$tmp/$pkg"
done
# Drops roff requests and comments, unescapes the common inline escapes.
to_text() {
  zcat "$1" | grep -v '^\.' | sed -e 's/\\f[BIRP]//g; s/\\f(..//g; s/\\-/-/g; s/\\(em/—/g; s/\\,//g; s/\\\///g; s/\\&//g; s/\\e/\\/g'
}
for pair in zh_CN:zh/usr/share/man/zh_CN ja:ja/usr/share/man/ja; do
  name=${pair%%:*}
  dir=$tmp/${pair#*:}
  : > "$out/$name.txt.partial"
  for p in "${pages[@]}"; do
    f=$(ls "$dir"/man1/"$p".1.gz 2>/dev/null | head -n 1 || true)
    [ -n "$f" ] && to_text "$f" >> "$out/$name.txt.partial"
  done
  mv "$out/$name.txt.partial" "$out/$name.txt"
  echo "wrote $out/$name.txt ($(wc -c < "$out/$name.txt") bytes)"
done
