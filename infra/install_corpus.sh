#!/usr/bin/env bash
# Installs the demo corpus: Debian's Python 3.11 documentation (530 HTML pages) and the Debian Reference in four
# languages (so language filtering has pages to drop). Skips what is already there; explains what to do without apt.
set -euo pipefail
missing=()
[ -d /usr/share/doc/python3.11/html ] || missing+=(python3.11-doc)
for lang in en de fr ja; do
  [ -f "/usr/share/debian-reference/index.$lang.html" ] || missing+=("debian-reference-$lang")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "lmforge: the demo corpus needs the Debian packages: ${missing[*]}" >&2
  echo "  apt-get is not available here. Point the crawl at your own site instead, e.g." >&2
  echo "  lmforge run --set crawl.local_site.roots='{\"site\": \"/path/to/html\"}'  (see README, Crawl)." >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "lmforge: installing the demo corpus (${missing[*]})"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
