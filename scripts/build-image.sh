#!/usr/bin/env bash
# Builds the edgeguard module image for one platform, offline:
#
#   scripts/build-image.sh amd64|arm32v7|arm64v8 TAG
#
# 1. scripts/build-static.sh ARCH: the static binary, staged at dist/ARCH/edgeguard;
# 2. docker build -f Dockerfile.ARCH . (FROM scratch: nothing is pulled), with the OCI labels
#    version (Cargo.toml), revision (git) and source (the git remote, when there is one);
# 3. the image's platform is checked (and set, see below) to the one of the binary.
#
# Prints the image id on stdout. Needs a Docker engine (scripts/dockerd-up.sh starts one).
#
# The platform: with BuildKit (`docker buildx`), `--platform` sets it. The classic builder (what
# a Docker client without buildx uses, and what Debian's docker.io 20.10 offers) ignores
# `--platform` for `FROM scratch` and labels every image with the daemon's own architecture, so an
# arm32v7 image would claim to be amd64. Then the image is saved, its configuration's
# architecture/variant corrected, and loaded back under the same tag.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

arch="${1:-}"
tag="${2:-}"
case "$arch" in
    amd64) platform=linux/amd64; goarch=amd64; variant="" ;;
    arm32v7) platform=linux/arm/v7; goarch=arm; variant=v7 ;;
    arm64v8) platform=linux/arm64; goarch=arm64; variant=v8 ;;
    *) arch="" ;;
esac
if [ -z "$arch" ] || [ -z "$tag" ]; then
    echo "usage: $0 amd64|arm32v7|arm64v8 TAG" >&2
    exit 2
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    revision="$revision-dirty"
fi
source_url=$(git remote get-url origin 2>/dev/null || echo unknown)

bash scripts/build-static.sh "$arch" >/dev/null

build_args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision"
    --build-arg "SOURCE=$source_url" -f "Dockerfile.$arch" -t "$tag")
if docker buildx version >/dev/null 2>&1; then
    log "docker buildx build --platform $platform -t $tag"
    docker buildx build --load --platform "$platform" "${build_args[@]}" . >&2
else
    log "docker build -t $tag (classic builder)"
    DOCKER_BUILDKIT=0 docker build "${build_args[@]}" . >&2
fi

current=$(docker image inspect -f '{{.Architecture}}/{{.Variant}}' "$tag")
if [ "$current" != "$goarch/$variant" ]; then
    log "setting the image platform to $platform (the builder wrote $current)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    docker save -o "$work/image.tar" "$tag"
    mkdir "$work/image"
    tar -xf "$work/image.tar" -C "$work/image"
    python3 - "$work/image" "$goarch" "$variant" <<'PY'
import hashlib, json, os, sys
root, arch, variant = sys.argv[1:4]
with open(os.path.join(root, "manifest.json")) as f:
    manifest = json.load(f)
entry = manifest[0]
with open(os.path.join(root, entry["Config"])) as f:
    config = json.load(f)
config["architecture"] = arch
if variant:
    config["variant"] = variant
else:
    config.pop("variant", None)
data = json.dumps(config, separators=(",", ":")).encode()
name = hashlib.sha256(data).hexdigest() + ".json"
os.remove(os.path.join(root, entry["Config"]))
with open(os.path.join(root, name), "wb") as f:
    f.write(data)
entry["Config"] = name
with open(os.path.join(root, "manifest.json"), "w") as f:
    json.dump(manifest, f)
PY
    (cd "$work/image" && tar -cf "$work/fixed.tar" .)
    docker load -i "$work/fixed.tar" >&2
    current=$(docker image inspect -f '{{.Architecture}}/{{.Variant}}' "$tag")
    if [ "$current" != "$goarch/$variant" ]; then
        echo "error: the image $tag is $current, not $goarch/$variant" >&2
        exit 1
    fi
fi

size=$(docker image inspect -f '{{.Size}}' "$tag")
log "built $tag for $platform: $size bytes"
docker image inspect -f '{{.Id}}' "$tag"
