#!/bin/sh
# Build and install Citus from its source archive when PostgreSQL 15 has no citus.so yet.
#
#   deploy/citus/install.sh            (as root; run from the checkout)
#
# CITUS_SOURCE overrides the archive (default: ../shared/vendor/citus/citus-13.2.2.tar.gz, with
# the one-line build patch beside it). The source is unpacked and built under var/citus-build/;
# a stamp file there makes a second run a no-op, and nothing is built when citus.so exists.
set -eu

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
CITUS_SOURCE=${CITUS_SOURCE:-../shared/vendor/citus/citus-13.2.2.tar.gz}
CITUS_PATCH=${CITUS_PATCH:-$(dirname "$CITUS_SOURCE")/pg15-have-createdb-privilege.patch}
BUILD_DIR=${CITUS_BUILD_DIR:-var/citus-build}
STAMP=$BUILD_DIR/.installed
LIBDIR=/usr/lib/postgresql/15/lib

say() { echo "[citus-install] $*" >&2; }

if [ -f "$LIBDIR/citus.so" ]; then
    say "citus.so already installed in $LIBDIR"
    exit 0
fi
if [ -f "$STAMP" ]; then
    say "stamp $STAMP exists but $LIBDIR/citus.so is missing: rebuilding"
    rm -f "$STAMP"
fi
if [ "$(id -u)" != 0 ]; then
    say "run as root: it installs Debian packages and writes into $LIBDIR"
    exit 1
fi
[ -f "$CITUS_SOURCE" ] || { say "no source archive at $CITUS_SOURCE (set CITUS_SOURCE)"; exit 1; }

say "installing the Debian build dependencies"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential postgresql-server-dev-15 libcurl4-openssl-dev liblz4-dev libzstd-dev \
    libkrb5-dev libssl-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev >/dev/null

mkdir -p "$BUILD_DIR"
SRC_DIR=$BUILD_DIR/$(tar tzf "$CITUS_SOURCE" | head -1 | cut -d/ -f1)
rm -rf "$SRC_DIR"
say "unpacking $CITUS_SOURCE into $SRC_DIR"
tar xzf "$CITUS_SOURCE" -C "$BUILD_DIR"
if [ -f "$CITUS_PATCH" ]; then
    say "applying $CITUS_PATCH"
    patch -d "$SRC_DIR" -p1 < "$CITUS_PATCH"
fi

say "building (about 8 minutes on 2 cores); log in $BUILD_DIR/build.log"
(
    cd "$SRC_DIR"
    ./configure PG_CONFIG="$PG_CONFIG"
    make -j2
    make install
) > "$BUILD_DIR/build.log" 2>&1 || { tail -30 "$BUILD_DIR/build.log" >&2; exit 1; }

[ -f "$LIBDIR/citus.so" ] || { say "make install left no $LIBDIR/citus.so"; exit 1; }
touch "$STAMP"
say "installed $LIBDIR/citus.so"
