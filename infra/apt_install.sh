#!/usr/bin/env bash
# Installs the Debian packages lmforge uses outside Python, skipping what is already there:
#   corpus   the demo corpus: Debian's Python 3.11 docs (530 HTML pages) and the Debian Reference in four languages
#            (so language filtering has pages to drop); `fortunes`, general English held out from the crawl (smol_cpu
#            checks that adapting SmolLM2 does not forget it)
#   browser  chromium, for the tests that render the Prefect and MLflow UIs and use the chat page of `lmforge serve`
#   postgres PostgreSQL server, for the tests of the production set-up (they run their own cluster in a temp dir)
# Without apt (or root/sudo) it explains what to do instead and exits 0: the demo can crawl any other site.
set -euo pipefail
missing=()
for group in "$@"; do
  case "$group" in
    corpus)
      [ -d /usr/share/doc/python3.11/html ] || missing+=(python3.11-doc)
      for lang in en de fr ja; do
        [ -f "/usr/share/debian-reference/index.$lang.html" ] || missing+=("debian-reference-$lang")
      done
      [ -f /usr/share/games/fortunes/fortunes ] || missing+=(fortunes) ;;
    browser)
      command -v chromium >/dev/null 2>&1 || missing+=(chromium) ;;
    postgres)
      compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql) ;;
    *) echo "apt_install.sh: unknown group '$group' (corpus, browser, postgres)" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1 || { [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; }; then
  echo "lmforge: cannot install ${missing[*]} here (needs apt-get and root or sudo)." >&2
  echo "  The demo corpus is optional: crawl your own HTML directory or site instead (README, Crawl)." >&2
  exit 0
fi
echo "lmforge: apt-get install ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
