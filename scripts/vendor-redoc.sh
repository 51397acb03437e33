#!/usr/bin/env bash
# Vendor Redoc (the /docs page's renderer) from the npm registry into grokproxy/static/vendor/redoc,
# so /docs loads nothing from a CDN. Pinned: bump VERSION and SHA256 together, run, commit.
# Needs npm (for `npm pack`, which checks the tarball against the registry's integrity hash).
set -euo pipefail

VERSION=3.0.1
# sha256 of bundles/redoc.standalone.js in redoc@3.0.1
SHA256=8c70c2de83d33e33a75b225e573d6d9fe851f066f824b44b1637d831d52d7543

repo=$(cd "$(dirname "$0")/.." && pwd)
target="$repo/grokproxy/static/vendor/redoc"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "redoc@$VERSION" >/dev/null)
tar -xzf "$work/redoc-$VERSION.tgz" -C "$work" package/bundles/redoc.standalone.js package/LICENSE
echo "$SHA256  $work/package/bundles/redoc.standalone.js" | sha256sum --check --quiet
mkdir -p "$target"
cp "$work/package/bundles/redoc.standalone.js" "$target/redoc.standalone.js"
cp "$work/package/LICENSE" "$target/LICENSE"
printf 'redoc %s from the npm registry (scripts/vendor-redoc.sh); MIT licence in LICENSE.\n' \
    "$VERSION" >"$target/VERSION"
echo "vendored redoc $VERSION into $target"
