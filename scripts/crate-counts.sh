#!/usr/bin/env bash
# The crate counts of docs/embedding.md ("Figures"), from `cargo tree`, per feature set:
#
#   scripts/crate-counts.sh           rewrite the table between its markers in docs/embedding.md
#   scripts/crate-counts.sh --check   fail when the table there is not what cargo tree says (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

doc=docs/embedding.md
begin='<!-- crate-counts: begin (scripts/crate-counts.sh writes this table) -->'
end='<!-- crate-counts: end -->'

# Distinct crates of conpaas-core's normal dependency graph on this host, itself included.
count() {
    cargo tree -q -p conpaas-core -e normal --prefix none --locked "$@" |
        sed 's/ (\*)$//' | sort -u | wc -l
}
# Whether the graph builds C code: aws-lc-sys (the crypto), libsqlite3-sys (bundled SQLite),
# pq-sys (links libpq), openssl-sys (links the system's OpenSSL: `legacy-tls`).
native() {
    local found
    found=$(cargo tree -q -p conpaas-core -e normal --prefix none --locked "$@" |
        grep -o '^\(aws-lc-sys\|libsqlite3-sys\|pq-sys\|openssl-sys\) ' | sort -u | tr -d ' ' | paste -sd, - |
        sed 's/,/, /g')
    echo "${found:-none}"
}

rows=(
    "none (\`--no-default-features\`)|--no-default-features"
    "\`ca\`|--no-default-features --features ca"
    "\`config\`|--no-default-features --features config"
    "\`sqlite\`|--no-default-features --features sqlite"
    "\`postgres\`|--no-default-features --features postgres"
    "\`ec2\`|--no-default-features --features ec2"
    "\`opennebula\`|--no-default-features --features opennebula"
    "\`openstack\`|--no-default-features --features openstack"
    "\`manager-client\`|--no-default-features --features manager-client"
    "\`client\`|--no-default-features --features client"
    "\`director\`, \`sqlite\`|--no-default-features --features director,sqlite"
    "\`check\`, \`sqlite\`|--no-default-features --features check,sqlite"
    "\`api\`, \`sqlite\`|--no-default-features --features api,sqlite"
    "\`server\`, \`sqlite\`|--no-default-features --features server,sqlite"
    "all (the default)|--all-features"
)
table=$(
    echo "$begin"
    echo "| features | distinct crates, conpaas-core included | C code built |"
    echo "|---|---|---|"
    for row in "${rows[@]}"; do
        name=${row%%|*}
        read -r -a flags <<<"${row#*|}"
        echo "| $name | $(count "${flags[@]}") | $(native "${flags[@]}") |"
    done
    echo "$end"
)

current=$(awk -v b="$begin" -v e="$end" '$0 == b {inside = 1} inside {print} $0 == e {inside = 0}' "$doc")
if [ "${1:-}" = "--check" ]; then
    if [ "$current" != "$table" ]; then
        diff -u <(echo "$current") <(echo "$table") >&2 || true
        echo "E: $doc's crate counts are stale (above: - written, + now): run $0" >&2
        exit 1
    fi
    exit 0
fi
if [ -z "$current" ]; then
    echo "E: $doc has no '$begin' line to write after" >&2
    exit 1
fi
TABLE="$table" awk -v b="$begin" -v e="$end" '
    $0 == b {print ENVIRON["TABLE"]; skip = 1; next}
    $0 == e {skip = 0; next}
    !skip {print}' "$doc" >"$doc.new"
mv "$doc.new" "$doc"
echo "wrote the crate counts in $doc" >&2
