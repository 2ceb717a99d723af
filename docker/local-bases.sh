#!/usr/bin/env bash
# shellcheck disable=SC2016 # the hooks' "$1" is expanded by mmdebstrap
# Stand-ins for the two official base images our Dockerfiles name, built from
# Debian's packages, for a machine whose Docker engine reaches no image registry
# (but reaches Debian's package mirror and PyPI). A normal machine never needs this:
# `docker compose build` pulls debian:bookworm-slim and python:3.11-slim.
#
#   docker/local-bases.sh            # builds only the tags that are missing
#   docker/local-bases.sh --force    # rebuilds both
#
# * debian:bookworm-slim  <- mmdebstrap --variant=minbase bookworm (+ ca-certificates)
# * python:3.11-slim      <- the same + CPython 3.11 in /usr/local with pip, as in the
#                            official image: copied from PYTHON_PREFIX when given (e.g.
#                            PYTHON_PREFIX=$(python3 -c 'import sys; print(sys.base_prefix)')),
#                            else Debian's python3 (3.11.2, too old for some pins).
#
# Both get this machine's extra CA certificates (/usr/local/share/ca-certificates), and
# pip is told to use the system bundle (/etc/pip.conf), so that apt and pip inside a
# build reach the mirrors through an intercepting proxy.
# Needs root (mmdebstrap's root mode), mmdebstrap and a running dockerd.
set -euo pipefail

force=${1:-}
suite=bookworm
extra_cas=/usr/local/share/ca-certificates

have() { [ "$force" != "--force" ] && docker image inspect "$1" >/dev/null 2>&1; }

build() {  # TAG PACKAGES HOOK CHANGES...
  local tag=$1 include=$2 hook=$3
  shift 3
  if have "$tag"; then
    echo "local-bases: $tag is there"
    return
  fi
  echo "local-bases: building $tag from Debian $suite packages ($include)"
  local hooks=()
  if [ -d "$extra_cas" ] && compgen -G "$extra_cas/*.crt" >/dev/null; then
    hooks+=(--customize-hook="mkdir -p \"\$1$extra_cas\""
            --customize-hook="sync-in $extra_cas $extra_cas"
            --customize-hook='chroot "$1" update-ca-certificates --fresh >/dev/null'
            --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1"/etc/pip.conf')
  fi
  [ -n "$hook" ] && hooks+=(--customize-hook="$hook")
  mmdebstrap --quiet --variant=minbase --include="$include" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='chroot "$1" apt-get clean' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
    "${hooks[@]}" "$suite" - \
    | docker import "$@" - "$tag" >/dev/null
  echo "local-bases: $tag built"
}

build debian:bookworm-slim ca-certificates "" \
  --change 'CMD ["bash"]'

if [ -n "${PYTHON_PREFIX:-}" ]; then
  # The official image's own layout: CPython in /usr/local, pip from ensurepip. Its
  # interpreter is copied from PYTHON_PREFIX (a CPython 3.11 installed on this machine,
  # e.g. pyenv's): Debian's 3.11.2 is older than some pinned packages require (3.11.5+).
  version=$("$PYTHON_PREFIX/bin/python3" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$version" = 3.11 ] || { echo "local-bases: $PYTHON_PREFIX is Python $version, not 3.11" >&2; exit 1; }
  copy="tar -C '$PYTHON_PREFIX' --exclude='lib/python3.11/site-packages/*' \
    --exclude=lib/python3.11/test --exclude='lib/python3.11/config-*' \
    --exclude='__pycache__' -cf - bin/python3.11 lib/libpython3.11.so.1.0 lib/python3.11 \
    | tar -C \"\$1/usr/local\" -xf -"
  build python:3.11-slim \
    ca-certificates,libssl3,libffi8,liblzma5,libreadline8,libsqlite3-0,libtinfo6,zlib1g,libbz2-1.0,libuuid1,libexpat1,libncursesw6,libgdbm6 \
    "$copy"' && chroot "$1" ldconfig && ln -sf python3.11 "$1"/usr/local/bin/python3 && ln -sf python3 "$1"/usr/local/bin/python && chroot "$1" /usr/local/bin/python3 -m ensurepip --default-pip >/dev/null && chroot "$1" /usr/local/bin/python3 -c "import ssl, sqlite3, ctypes, lzma, bz2, zlib"' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]'
else
  # Debian's own python3 (3.11.2) and pip, allowed to install system-wide.
  build python:3.11-slim ca-certificates,python3,python3-pip,python3-venv \
    'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED; ln -sf /usr/bin/python3 "$1"/usr/local/bin/python; ln -sf /usr/bin/pip3 "$1"/usr/local/bin/pip' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]'
fi
