#!/usr/bin/env bash
# conpaas-core's Cargo features, each over the minimal set, then none and all, checked and
# documented: run before a release and whenever features change (not in CI, which checks only
# none and the default set, to stay within its time budget on 2 cores). See docs/embedding.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

# Features that stand alone.
alone=(ca sqlite postgres ec2 opennebula openstack config manager-client client)
# Features built on the store, which needs a backend: each is checked with either backend.
on_store=(director api server manifest check legacy-tls)

# A combination that leaves an import or item unused is a bug too: warnings fail the run
# (grepped, since RUSTFLAGS=-Dwarnings would rebuild every dependency).
# The docs too: an intra-doc link to an item another feature gates breaks without it.
run() {
    echo "== cargo check, cargo doc -p conpaas-core $*" >&2
    local log
    log=$(cargo check -p conpaas-core --lib --examples --locked --message-format short "$@" 2>&1 &&
        cargo doc -p conpaas-core --no-deps --locked --message-format short "$@" 2>&1) || {
        echo "$log" >&2
        exit 1
    }
    if grep -q '^warning\|: warning' <<<"$log"; then
        echo "$log" >&2
        echo "warnings with: $*" >&2
        exit 1
    fi
}

run --no-default-features
for feature in "${alone[@]}"; do
    run --no-default-features --features "$feature"
done
for feature in "${on_store[@]}"; do
    for backend in sqlite postgres; do
        run --no-default-features --features "$feature,$backend"
    done
done
run --all-features
echo "all feature combinations check" >&2
