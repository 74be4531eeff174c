#!/usr/bin/env bash
# Start/stop a throwaway PostgreSQL cluster for end-to-end tests.
#
# Usage: postgres.sh start|stop STATE_DIR PORT
#
# Must run as root (Debian 12). Installs postgresql/postgresql-client with
# apt-get if needed. A fresh cluster is created in STATE_DIR/data (owned by
# the 'postgres' user, trust authentication, superuser 'postgres'); it listens
# on TCP 127.0.0.1:PORT only, with its unix socket in STATE_DIR. The Debian
# system cluster (/etc/postgresql, pg_ctlcluster) is never used.
#
# On successful start, prints to stdout:
#   PGUSER=postgres
# Connect with: psql -h 127.0.0.1 -p PORT -U postgres
# Server log: STATE_DIR/postgres.log. All diagnostics go to stderr.
set -euo pipefail

PROG=postgres.sh
PGOSUSER=postgres
LISTEN_HOST=127.0.0.1

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage() { printf 'usage: %s start|stop STATE_DIR PORT\n' "$PROG" >&2; exit 2; }

[ "$#" -eq 3 ] || usage
ACTION=$1
STATE_ARG=$2
PORT=$3
case "$ACTION" in start | stop) ;; *) usage ;; esac
[ -n "$STATE_ARG" ] || die "STATE_DIR must not be empty"
case "$STATE_ARG" in *[[:space:]\'\"\\]*) die "STATE_DIR must not contain whitespace, quotes or backslashes: '$STATE_ARG'" ;; esac
case "$PORT" in '' | *[!0-9]*) die "PORT must be a number, got '$PORT'" ;; esac
PORT=$((10#$PORT))
{ [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ]; } || die "PORT out of range: $PORT"
[ "$(id -u)" -eq 0 ] || die "must run as root (needs runuser -u $PGOSUSER)"

STATE_DIR=$(realpath -m -- "$STATE_ARG")
DATA=$STATE_DIR/data
LOGFILE=$STATE_DIR/postgres.log
PGBIN=

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/$LISTEN_HOST/$PORT") 2>/dev/null
}

# Runs a command as the postgres OS user, from a directory it can read.
as_pg() {
    (cd / && runuser -u "$PGOSUSER" -- "$@")
}

# Installs Debian packages through the project's one helper (serialized, no services).
# shellcheck source=../../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
apt_install() {
    ensure_debian_packages "$@" || die "installing $* failed"
}

# Sets PGBIN to /usr/lib/postgresql/VER/bin for the major version that created
# $DATA if it exists, else to the newest one that has initdb + pg_ctl.
find_pgbin() {
    local d ver=
    PGBIN=
    if [ -f "$DATA/PG_VERSION" ]; then
        ver=$(tr -dc '0-9.' <"$DATA/PG_VERSION")
        d=/usr/lib/postgresql/$ver/bin
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            PGBIN=$d
        fi
        [ -n "$PGBIN" ]
        return
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            PGBIN=$d
        fi
    done
    [ -n "$PGBIN" ]
}

ensure_installed() {
    if ! find_pgbin || ! command -v psql >/dev/null; then
        apt_install postgresql postgresql-client
    fi
    if ! find_pgbin; then
        if [ -f "$DATA/PG_VERSION" ]; then
            die "$DATA was created by PostgreSQL $(cat "$DATA/PG_VERSION"), whose binaries are not in /usr/lib/postgresql/$(cat "$DATA/PG_VERSION")/bin; remove $STATE_DIR"
        fi
        die "no initdb/pg_ctl/postgres under /usr/lib/postgresql/*/bin even after installing postgresql"
    fi
    command -v psql >/dev/null || die "psql still missing after installing postgresql-client"
    id -u "$PGOSUSER" >/dev/null 2>&1 || die "OS user '$PGOSUSER' does not exist (should be created by the postgresql-common package)"
    command -v runuser >/dev/null || die "runuser (util-linux) not found"
}

# pg_ctl wrapper; pg_ctl refuses to run as root, so run it as postgres.
pgctl() {
    as_pg "$PGBIN/pg_ctl" "$@"
}

# Succeeds if the cluster in $DATA is running (according to pg_ctl).
cluster_running() {
    [ -f "$DATA/postmaster.pid" ] || return 1
    pgctl status -D "$DATA" >/dev/null 2>&1
}

# Port the running cluster listens on (line 4 of postmaster.pid).
running_port() {
    sed -n 4p "$DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9'
}

print_env() {
    printf 'PGUSER=%s\n' "$PGOSUSER"
}

do_stop() {
    if [ ! -d "$DATA" ]; then
        log "not running (no cluster in $DATA)"
        return 0
    fi
    find_pgbin || die "no PostgreSQL $(cat "$DATA/PG_VERSION" 2>/dev/null) binaries found under /usr/lib/postgresql/*/bin"
    if ! cluster_running; then
        log "not running (cluster $DATA)"
        return 0
    fi
    log "stopping cluster $DATA"
    pgctl stop -D "$DATA" -m fast -w -t 60 >&2 || die "pg_ctl stop failed for $DATA (log: $LOGFILE)"
    log "stopped"
}

init_cluster() {
    mkdir -p "$STATE_DIR"
    chown "$PGOSUSER:$PGOSUSER" "$STATE_DIR"
    # 0755 so non-root users can reach the unix socket; data/ itself is 0700.
    chmod 0755 "$STATE_DIR"
    as_pg test -w "$STATE_DIR" ||
        die "user $PGOSUSER cannot write $STATE_DIR (is a parent directory not searchable by $PGOSUSER?)"

    if [ -f "$DATA/PG_VERSION" ]; then
        : # existing cluster; find_pgbin picked the matching binaries
    else
        if [ -e "$DATA" ] && [ -n "$(ls -A "$DATA" 2>/dev/null)" ]; then
            die "$DATA exists, is not empty and is not a PostgreSQL cluster; remove it"
        fi
        log "creating cluster in $DATA with $PGBIN/initdb"
        as_pg "$PGBIN/initdb" -D "$DATA" --auth=trust --username="$PGOSUSER" \
            --encoding=UTF8 --no-locale >&2 ||
            die "initdb failed for $DATA"
    fi

    # Settings are rewritten on every start so that PORT can change between
    # runs; the include line is added once. listen_addresses is additionally
    # forced on the command line (see do_start) so nothing can widen it.
    cat >"$DATA/e2e_target.conf" <<EOF
# Generated by tests/targets/$PROG; included from postgresql.conf.
listen_addresses = '$LISTEN_HOST'
port = $PORT
unix_socket_directories = '$STATE_DIR'
ssl = off
logging_collector = off
fsync = off
EOF
    chown "$PGOSUSER:$PGOSUSER" "$DATA/e2e_target.conf"
    grep -qxF "include 'e2e_target.conf'" "$DATA/postgresql.conf" ||
        printf "\ninclude 'e2e_target.conf'\n" >>"$DATA/postgresql.conf"
}

do_start() {
    local rport i

    if [ -f "$DATA/postmaster.pid" ] && find_pgbin && cluster_running; then
        rport=$(running_port)
        if [ "$rport" != "$PORT" ]; then
            die "cluster $DATA is already running on port ${rport:-?}, not $PORT; run '$0 stop $STATE_ARG $PORT' first"
        fi
        # pg_ctl only checks that the pid is alive; a server that is starting
        # up or dying (e.g. killed postmaster not yet reaped) also counts.
        for i in $(seq 1 100); do
            if port_open && cluster_running; then
                log "already running (cluster $DATA) on $LISTEN_HOST:$PORT"
                print_env
                return 0
            fi
            cluster_running || break
            sleep 0.1
        done
        if cluster_running; then
            die "cluster $DATA looks running (pid $(head -n1 "$DATA/postmaster.pid")) but $LISTEN_HOST:$PORT accepts no connections after 10 s (log: $LOGFILE)"
        fi
        log "cluster $DATA is no longer running; starting it again"
    fi
    if port_open; then
        die "$LISTEN_HOST:$PORT is already in use by another process (not the cluster in $DATA)"
    fi

    ensure_installed
    init_cluster

    log "starting cluster $DATA on $LISTEN_HOST:$PORT"
    if ! pgctl start -D "$DATA" -l "$LOGFILE" -w -t 60 \
        -o "-c listen_addresses=$LISTEN_HOST -c port=$PORT" >&2; then
        tail -n 20 "$LOGFILE" 2>/dev/null | sed "s/^/$PROG: postgres.log: /" >&2 || true
        die "pg_ctl start failed for $DATA (log: $LOGFILE)"
    fi

    for i in $(seq 1 100); do
        port_open && break
        sleep 0.1
    done
    port_open || die "postgres started but $LISTEN_HOST:$PORT does not accept connections (log: $LOGFILE)"
    log "started (log: $LOGFILE)"
    print_env
}

case "$ACTION" in
    start) do_start ;;
    stop) do_stop ;;
esac
