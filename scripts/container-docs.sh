#!/usr/bin/env bash
# Runs the container lines of docs/operations.md ("Container image") as written, one by one,
# with Docker or Podman, whichever answers (CONTAINER_ENGINE=podman picks one), and checks
# what each is said to do: init and adduser succeed, the detached director becomes healthy
# and answers /version on the published port, backup writes its file. Prints
# `SKIP: container docs` and exits 0 where no engine answers (this machine kind has the docker
# client and no daemon). The image build compiles the release binaries from scratch (about
# 13 minutes on 2 cores), so `.ci/run` calls this only where an engine answers.
#
#   ./scripts/container-docs.sh            # or CONTAINER_ENGINE=podman ./scripts/container-docs.sh
#   ./scripts/container-docs.sh --list     # the lines it would run (conpaas-bin/tests/packaging.rs)
set -euo pipefail
cd "$(dirname "$0")/.."

# The fenced block after "## Container image": every line that starts with `docker `.
mapfile -t lines < <(awk '
    /^## Container image/ { section = 1; next }
    section && /^## / { exit }
    section && /^```/ { inside = !inside; next }
    section && inside && /^docker / { print }
' docs/operations.md)
if ((${#lines[@]} < 5)); then
    echo "docs/operations.md: expected the container lines under \"## Container image\", found ${#lines[@]}" >&2
    exit 1
fi
if [[ ${1:-} == --list ]]; then
    printf '%s\n' "${lines[@]}"
    exit 0
fi

engine=${CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
    for candidate in docker podman; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
            engine=$candidate
            break
        fi
    done
fi
if [[ -z $engine ]]; then
    echo "SKIP: container docs (neither docker nor podman answers here)" >&2
    exit 0
fi
# An engine without a registry (this machine kind reaches package registries only) cannot build.
if ! "$engine" pull -q debian:bookworm-slim >/dev/null 2>&1; then
    echo "SKIP: container docs ($engine answers but cannot pull debian:bookworm-slim)" >&2
    exit 0
fi
# Podman builds OCI images by default, which have no HEALTHCHECK; the Docker format keeps it.
export BUILDAH_FORMAT=docker

cleanup() {
    "$engine" rm -f director >/dev/null 2>&1 || true
    "$engine" volume rm -f conpaas-data >/dev/null 2>&1 || true
}
cleanup
trap cleanup EXIT

password=container-docs-password
for line in "${lines[@]}"; do
    command=${line%%#*}                     # the docs' trailing comments are not arguments
    command="$engine ${command#docker }"
    echo "+ $command" >&2
    case $line in
    *" adduser "*)
        # `-it` asks for a terminal: `script` gives it one, fed the password twice.
        printf '%s\n%s\n' "$password" "$password" |
            script -qec "$command" /dev/null >/tmp/container-docs-adduser.log 2>&1 ||
            { cat /tmp/container-docs-adduser.log >&2; exit 1; }
        ;;
    *" inspect "*)
        # Healthy once `director health` has passed: Docker runs the check itself; Podman
        # without systemd timers runs it when asked.
        status=
        for _ in $(seq 60); do
            [[ $engine == podman ]] && podman healthcheck run director >/dev/null 2>&1 || true
            status=$(eval "$command")
            [[ $status == healthy ]] && break
            sleep 2
        done
        if [[ $status != healthy ]]; then
            echo "the director did not become healthy: $status" >&2
            "$engine" logs director >&2 || true
            exit 1
        fi
        ;;
    *)
        eval "$command"
        ;;
    esac
done

# The published port serves the API under the volume's CA, for the name given to `init`.
"$engine" run --rm -v conpaas-data:/data --entrypoint cat conpaas-director /data/certs/ca_cert.pem \
    >/tmp/container-docs-ca.pem
version=$(curl -sS --cacert /tmp/container-docs-ca.pem \
    --resolve director.example.org:5555:127.0.0.1 https://director.example.org:5555/version)
[[ -n $version ]] || { echo "/version answered nothing" >&2; exit 1; }
"$engine" run --rm -v conpaas-data:/data --entrypoint test conpaas-director -s /data/director-backup.db
echo "container docs: ${#lines[@]} lines ran with $engine; /version answered $version" >&2
