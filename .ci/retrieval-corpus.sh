#!/usr/bin/env bash
# Installs the Debian packages whose texts make the retrieval benchmark's corpus
# (benches/retrieval/CORPUS.md lists them, with their licences):
#   base-files     /usr/share/common-licenses (always installed)
#   miscfiles      /usr/share/state/us-constitution.gz, us-declaration.gz (public domain)
#   jargon-text    /usr/share/doc/jargon-text/jargon.txt.gz (public domain)
#   sqlite3-doc    /usr/share/doc/sqlite3/*.html (public domain)
#   python3.11-doc /usr/share/doc/python3.11/html (PSF License)
# and poppler-utils (pdftotext), which the pipeline reads the generated PDFs with.
# Idempotent. Usage: .ci/retrieval-corpus.sh
set -euo pipefail
need=()
for f in /usr/share/state/us-constitution.gz:miscfiles \
  /usr/share/doc/jargon-text/jargon.txt.gz:jargon-text \
  /usr/share/doc/sqlite3/datatype3.html:sqlite3-doc \
  /usr/share/doc/python3.11/html/tutorial/index.html:python3.11-doc; do
  [ -e "${f%%:*}" ] || need+=("${f#*:}")
done
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
echo "retrieval corpus packages: installed"
