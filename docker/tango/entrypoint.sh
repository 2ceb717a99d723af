#!/bin/sh
# Roles of the tango image (docker/tango/Dockerfile), configured by environment:
#
#   mariadb     MariaDB on :3306; on first start (empty /var/lib/mysql) it creates the
#               database $MYSQL_DATABASE (tango), the user $MYSQL_USER with the password
#               of /run/secrets/tango_db_password, and the Tango schema exactly as
#               Debian's tango-db does it (dbconfig-common's install script).
#   databaseds  the C++ Tango database server (sys/database/2) on :10000, on that MariaDB
#               ($MYSQL_HOST, e.g. mariadb:3306)
#   tangotest   Debian's C++ TangoTest (sys/tg_test/1, registered by the schema) on
#               $TANGO_HOST
set -eu

MYSQL_DATABASE=${MYSQL_DATABASE:-tango}
MYSQL_USER=${MYSQL_USER:-tango}
if [ -z "${MYSQL_PASSWORD:-}" ] && [ -r /run/secrets/tango_db_password ]; then
  MYSQL_PASSWORD=$(cat /run/secrets/tango_db_password)
fi
export MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD

# DataBaseds and TangoTest run as the `tango` user of Debian's tango-common.
as_tango() { exec setpriv --reuid=tango --regid=tango --init-groups "$@"; }

wait_for_database() {  # until the Tango database answers (tango_admin uses $TANGO_HOST)
  i=0
  until tango_admin --ping-database 1 >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 120 ] || { echo "no Tango database at $TANGO_HOST" >&2; exit 1; }
    sleep 1
  done
}

case "${1:-databaseds}" in
  mariadb)
    data=/var/lib/mysql
    mkdir -p "$data" /run/mysqld && chown mysql:mysql "$data" /run/mysqld
    if [ ! -d "$data/mysql" ]; then
      [ -n "${MYSQL_PASSWORD:-}" ] || { echo "no /run/secrets/tango_db_password" >&2; exit 1; }
      echo "mariadb: first start, creating the Tango database $MYSQL_DATABASE"
      mariadb-install-db --user=mysql --datadir="$data" --skip-test-db \
        --auth-root-authentication-method=socket >/dev/null
      mariadbd --user=mysql --datadir="$data" --skip-networking \
        --socket=/run/mysqld/init.sock &
      pid=$!
      i=0
      until mariadb --socket=/run/mysqld/init.sock -e 'SELECT 1' >/dev/null 2>&1; do
        i=$((i + 1)); [ "$i" -lt 60 ] || exit 1; sleep 1
      done
      mariadb --socket=/run/mysqld/init.sock <<SQL
CREATE DATABASE \`$MYSQL_DATABASE\`;
CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'%';
SQL
      mariadb --socket=/run/mysqld/init.sock "$MYSQL_DATABASE" \
        < /usr/share/dbconfig-common/data/tango-db/install/mysql
      kill "$pid"
      wait "$pid" || true
      echo "mariadb: Tango schema created"
    fi
    exec mariadbd --user=mysql --datadir="$data" --bind-address=0.0.0.0 --port=3306 \
      --skip-name-resolve --skip-log-bin
    ;;
  databaseds)
    export MYSQL_HOST="${MYSQL_HOST:-mariadb:3306}"
    port=${TANGO_HOST##*:}
    as_tango /usr/lib/tango/DataBaseds 2 -ORBendPoint "giop:tcp::$port"
    ;;
  tangotest)
    wait_for_database
    as_tango /usr/lib/tango/TangoTest "${TANGO_TEST_INSTANCE:-test}" -ORBendPoint giop:tcp::
    ;;
  *)
    exec "$@"
    ;;
esac
