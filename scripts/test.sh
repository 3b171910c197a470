#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests drive as independent readers and clients (haproxy: the scale-out example,
# packaging/haproxy.cfg, run in front of two directors).
missing=()
for tool in openssl curl python3 haproxy; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# The build links the system's OpenSSL (conpaas-core's `legacy-tls`: TLS 1.0 for the 1.2
# managers' libcloud) and libpq.
pkg-config --exists openssl 2>/dev/null || missing+=(pkg-config libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

# PostgreSQL for the tests: the machine's server on 127.0.0.1:5432 (trust auth,
# user postgres); where none answers, a private one is started there, never a silent skip.
pg_port=5432
pg_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; }
if ! pg_answers; then
    echo "no PostgreSQL answers on 127.0.0.1:$pg_port: starting one for the tests" >&2
    initdb_bin=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$initdb_bin" ]; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null
        initdb_bin=$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
    fi
    pg_bin=$(dirname "$initdb_bin")
    pg_data="${TMPDIR:-/tmp}/conpaas-test-postgres-$pg_port"
    # PostgreSQL refuses to run as root: root runs it as the package's postgres user.
    as_pg=(); [ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
    if [ ! -f "$pg_data/PG_VERSION" ]; then
        mkdir -p "$pg_data"
        [ ${#as_pg[@]} -gt 0 ] && chown postgres "$pg_data"
        "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >/dev/null
    fi
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_data" start >/dev/null
    pg_answers || { echo "E: PostgreSQL did not start (see $pg_data/server.log)" >&2; exit 1; }
fi

# Python packages (fake cloud servers) live in a project-local virtualenv.
if [ -f tests/support/requirements.txt ]; then
    if [ ! -x target/pyenv/bin/python ]; then
        python3 -m venv target/pyenv
    fi
    target/pyenv/bin/pip install -q --disable-pip-version-check -r tests/support/requirements.txt
    export CONPAAS_TEST_PYTHON="$PWD/target/pyenv/bin/python"
fi

exec cargo test --workspace --locked "$@"
