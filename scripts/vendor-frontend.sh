#!/usr/bin/env bash
# Vendors the chat page's browser libraries into grokproxy/static/vendor/chat/ from the npm
# registry, at pinned versions, with their licences. The page loads these files as they are:
# no CDN and no build step when grokproxy runs. Re-run after changing a version below, then
# review and commit the diff.
#
#   bash scripts/vendor-frontend.sh
set -euo pipefail

MARKED=18.2.1        # markdown -> HTML, streaming-safe (re-parsed on each delta)
DOMPURIFY=3.5.0      # sanitizes every rendered reply before it reaches the DOM
HIGHLIGHT=11.12.0    # @highlightjs/cdn-assets: the prebuilt browser bundle (common languages)

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/grokproxy/static/vendor/chat"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A packed tarball unpacks into package/; each library gets a folder of its own.
unpack() { # unpack <package>@<version> <dir>
  mkdir -p "$work/$2"
  (cd "$work" && npm pack --silent "$1" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work/$2" --strip-components=1
  rm -f "$work"/*.tgz
}

unpack "marked@$MARKED" marked
unpack "dompurify@$DOMPURIFY" dompurify
unpack "@highlightjs/cdn-assets@$HIGHLIGHT" highlight

rm -rf "$dest"
mkdir -p "$dest"
cp "$work/marked/lib/marked.umd.js" "$dest/marked.umd.js"
cp "$work/marked/LICENSE" "$dest/LICENSE.marked.txt"
cp "$work/dompurify/dist/purify.min.js" "$dest/purify.min.js"
cp "$work/dompurify/LICENSE" "$dest/LICENSE.dompurify.txt"
cp "$work/dompurify/LICENSE-MPL" "$dest/LICENSE-MPL.dompurify.txt"
cp "$work/highlight/highlight.min.js" "$dest/highlight.min.js"
cp "$work/highlight/styles/github.min.css" "$dest/highlight-light.min.css"
cp "$work/highlight/styles/github-dark.min.css" "$dest/highlight-dark.min.css"
cp "$work/highlight/LICENSE" "$dest/LICENSE.highlight.txt"
cat > "$dest/VERSIONS" <<VERSIONS
marked $MARKED
dompurify $DOMPURIFY
@highlightjs/cdn-assets $HIGHLIGHT
VERSIONS
echo "vendored into ${dest#"$root"/}:"
ls -l "$dest"
