#!/usr/bin/env bash
# conpaas-core's public API (all features) against its record, conpaas-core/public-api.txt, and
# the foreign types it names against conpaas-core/external-types.txt (docs/embedding.md,
# "What is public and stable").
#
#   scripts/public-api.sh            compare; fail on any difference (CI runs this)
#   scripts/public-api.sh --bless    record the API as it is now, once CHANGELOG.md's
#                                    "## Unreleased" section says what changed
#
# rustdoc's JSON is unstable output: RUSTC_BOOTSTRAP=1 asks the stable toolchain for it, as
# cargo-semver-checks does. Its own target directory keeps that setting from invalidating the
# main build's (some build scripts look at RUSTC_BOOTSTRAP).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

mode=${1:-check}
record=conpaas-core/public-api.txt
allowed=conpaas-core/external-types.txt
target=target/public-api

RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="-Z unstable-options --output-format json" \
    CARGO_TARGET_DIR=$target cargo doc -p conpaas-core --no-deps --all-features --locked --quiet
python3 scripts/public_api.py "$target/doc/conpaas_core.json" --external-types "$allowed" \
    >"$target/api.txt"

# CHANGELOG.md's Unreleased section, as a digest: recorded with the API, so that a new record
# needs a changed section.
unreleased=$(awk '/^## /{inside = ($0 ~ /^## Unreleased/)} inside' CHANGELOG.md | sha256sum | cut -c1-16)
recorded_unreleased=$(sed -n 's/^# CHANGELOG.md Unreleased: //p' "$record" 2>/dev/null || true)

if diff -q <(grep -v '^# ' "$record" 2>/dev/null) "$target/api.txt" >/dev/null; then
    echo "public API unchanged ($(wc -l <"$target/api.txt") lines)" >&2
    exit 0
fi

case $mode in
check | --check)
    diff -u <(grep -v '^# ' "$record" 2>/dev/null) "$target/api.txt" | head -n 200 >&2 || true
    echo "E: conpaas-core's public API changed without a record (above: - recorded, + now)." >&2
    echo "   Say what changed in CHANGELOG.md under \"## Unreleased\" (and whether it breaks" >&2
    echo "   callers: docs/embedding.md, \"What is public and stable\"), then run" >&2
    echo "   scripts/public-api.sh --bless and commit $record." >&2
    exit 1
    ;;
--bless)
    if [ "$unreleased" = "$recorded_unreleased" ]; then
        diff -u <(grep -v '^# ' "$record") "$target/api.txt" | head -n 200 >&2 || true
        echo "E: the API changed (above), but CHANGELOG.md's \"## Unreleased\" section has not" >&2
        echo "   changed since the last record: add the entry first." >&2
        exit 1
    fi
    {
        echo "# conpaas-core's public API, all features: scripts/public-api.sh --bless writes it."
        echo "# CHANGELOG.md Unreleased: $unreleased"
        cat "$target/api.txt"
    } >"$record"
    echo "recorded $(wc -l <"$target/api.txt") lines in $record" >&2
    ;;
*)
    echo "usage: $0 [--check | --bless]" >&2
    exit 2
    ;;
esac
