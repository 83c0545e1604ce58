#!/usr/bin/env bash
# Start a throw-away PostgreSQL on loopback for the study's storage tests and print its URL (best effort:
# prints nothing if PostgreSQL cannot be installed or started, and those tests then skip).
set -u
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 || exit 0
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=/tmp/sharpkd-pg
if [ ! -f $dir/PG_VERSION ]; then
  rm -rf $dir && mkdir -p $dir && chown postgres $dir
  su postgres -c "$bin/initdb -D $dir -A trust -U postgres" >/dev/null 2>&1 || exit 0
fi
su postgres -c "$bin/pg_ctl -D $dir -o '-p 55432 -k /tmp -c listen_addresses=127.0.0.1' -l $dir/log -w start" >/dev/null 2>&1
su postgres -c "$bin/psql -h 127.0.0.1 -p 55432 -U postgres -tc \"SELECT 1 FROM pg_database WHERE datname='sharpkd_test'\"" 2>/dev/null | grep -q 1 \
  || su postgres -c "$bin/createdb -h 127.0.0.1 -p 55432 -U postgres sharpkd_test" >/dev/null 2>&1 || exit 0
echo "postgresql+psycopg://postgres@127.0.0.1:55432/sharpkd_test"
