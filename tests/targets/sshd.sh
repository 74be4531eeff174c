#!/usr/bin/env bash
# Start/stop a throwaway OpenSSH server for end-to-end tests.
#
# Usage: sshd.sh start|stop STATE_DIR PORT
#
# Must run as root (Debian 12). Installs openssh-server/openssh-client with
# apt-get if needed. The server listens on 127.0.0.1:PORT only and uses a
# private config, host key and authorized_keys under STATE_DIR; the system's
# /etc/ssh configuration is never read or modified.
#
# On successful start, prints to stdout:
#   SSH_KEY=STATE_DIR/id_ed25519
#   SSH_USER=root
# and writes STATE_DIR/ssh_config_opts containing the client options, e.g.
#   ssh -p PORT $(cat STATE_DIR/ssh_config_opts) root@127.0.0.1 echo hi
# All diagnostics go to stderr.
set -euo pipefail

PROG=sshd.sh
SSHD=/usr/sbin/sshd
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
case "$STATE_ARG" in *[[:space:]%]*) die "STATE_DIR must not contain whitespace or '%': '$STATE_ARG'" ;; esac
case "$PORT" in '' | *[!0-9]*) die "PORT must be a number, got '$PORT'" ;; esac
PORT=$((10#$PORT))
{ [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ]; } || die "PORT out of range: $PORT"
[ "$(id -u)" -eq 0 ] || die "must run as root (sshd needs root to log in as root)"

STATE_DIR=$(realpath -m -- "$STATE_ARG")
CONFIG=$STATE_DIR/sshd_config
PIDFILE=$STATE_DIR/sshd.pid
LOGFILE=$STATE_DIR/sshd.log
HOST_KEY=$STATE_DIR/ssh_host_ed25519_key
CLIENT_KEY=$STATE_DIR/id_ed25519
AUTH_KEYS=$STATE_DIR/authorized_keys
OPTS_FILE=$STATE_DIR/ssh_config_opts

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/$LISTEN_HOST/$PORT") 2>/dev/null
}

# Prints the pid from the pid file if that process is alive and is our sshd.
our_pid() {
    local pid cmdline
    [ -f "$PIDFILE" ] || return 1
    pid=$(head -n1 "$PIDFILE" 2>/dev/null | tr -dc '0-9')
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] || return 1
    # Make sure it is the sshd started with *our* config (pid reuse guard).
    # (The listener rewrites its argv via setproctitle, so match a substring.)
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case "$cmdline" in *" -f $CONFIG "*) ;; *) return 1 ;; esac
    printf '%s\n' "$pid"
}

# Installs Debian packages, serialized across concurrent callers, without
# letting maintainer scripts start system services (the stock sshd would
# otherwise listen on 0.0.0.0:22 on machines with an init system).
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install $* manually"
    log "installing $* with apt-get"
    (
        flock -w 900 9 || die "timed out waiting for /run/lock/e2e-targets-apt.lock"
        created_policy=
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\n# temporary, created by tests/targets/%s\nexit 101\n' "$PROG" >/usr/sbin/policy-rc.d
            chmod 0755 /usr/sbin/policy-rc.d
            created_policy=1
        fi
        cleanup() { if [ -n "$created_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
        trap cleanup EXIT
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update >&2 ||
            die "apt-get update failed"
        apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" >&2 ||
            die "apt-get install $* failed"
    ) 9>/run/lock/e2e-targets-apt.lock
}

ensure_installed() {
    if [ ! -x "$SSHD" ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
        apt_install openssh-server openssh-client
    fi
    [ -x "$SSHD" ] || die "$SSHD still missing after installing openssh-server"
    command -v ssh >/dev/null || die "ssh still missing after installing openssh-client"
    command -v ssh-keygen >/dev/null || die "ssh-keygen still missing after installing openssh-client"
}

print_env() {
    printf 'SSH_KEY=%s\n' "$CLIENT_KEY"
    printf 'SSH_USER=root\n'
}

do_stop() {
    local pid i
    if ! pid=$(our_pid); then
        log "not running (no live sshd for $CONFIG)"
        rm -f "$PIDFILE"
        return 0
    fi
    log "stopping sshd pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "sshd pid $pid did not exit after SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$PIDFILE"
    log "stopped"
}

write_files() {
    mkdir -p "$STATE_DIR"
    chmod 0700 "$STATE_DIR"

    if [ ! -s "$HOST_KEY" ] || [ ! -s "$HOST_KEY.pub" ]; then
        rm -f "$HOST_KEY" "$HOST_KEY.pub"
        ssh-keygen -q -t ed25519 -N '' -C "e2e-sshd-host" -f "$HOST_KEY" >&2 ||
            die "ssh-keygen failed for host key"
    fi
    if [ ! -s "$CLIENT_KEY" ] || [ ! -s "$CLIENT_KEY.pub" ]; then
        rm -f "$CLIENT_KEY" "$CLIENT_KEY.pub"
        ssh-keygen -q -t ed25519 -N '' -C "e2e-client" -f "$CLIENT_KEY" >&2 ||
            die "ssh-keygen failed for client key"
    fi
    chmod 0600 "$HOST_KEY" "$CLIENT_KEY"

    cp -- "$CLIENT_KEY.pub" "$AUTH_KEYS"
    chmod 0600 "$AUTH_KEYS"

    cat >"$CONFIG" <<EOF
# Private sshd config for end-to-end tests; generated by tests/targets/$PROG.
# Does not include /etc/ssh/sshd_config or /etc/ssh/sshd_config.d.
AddressFamily inet
ListenAddress $LISTEN_HOST:$PORT
HostKey $HOST_KEY
PidFile $PIDFILE
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AuthorizedKeysFile $AUTH_KEYS
StrictModes no
UseDNS no
PrintMotd no
X11Forwarding no
AllowTcpForwarding yes
LogLevel VERBOSE
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
EOF

    printf '%s\n' "-i $CLIENT_KEY -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR" >"$OPTS_FILE"
}

do_start() {
    local pid i shadow_pw

    if pid=$(our_pid); then
        if grep -qxF -- "ListenAddress $LISTEN_HOST:$PORT" "$CONFIG" && port_open; then
            log "already running (pid $pid) on $LISTEN_HOST:$PORT"
            [ -s "$OPTS_FILE" ] || die "$OPTS_FILE missing although sshd is running; stop and start again"
            print_env
            return 0
        fi
        die "sshd pid $pid for $STATE_DIR is running but not (or no longer) serving $LISTEN_HOST:$PORT ($(grep -m1 '^ListenAddress' "$CONFIG" 2>/dev/null || echo 'config unreadable')); run '$0 stop $STATE_ARG $PORT' first"
    fi
    if port_open; then
        die "$LISTEN_HOST:$PORT is already in use by another process (not the sshd of $STATE_DIR)"
    fi

    ensure_installed
    write_files

    # Privilege separation directory; sshd refuses to start without it.
    if [ ! -d /run/sshd ]; then
        mkdir -p /run/sshd
        chmod 0755 /run/sshd
    fi

    # With UsePAM no, OpenSSH refuses *all* logins for accounts whose shadow
    # password starts with '!' (locked), even with a valid key.
    shadow_pw=$(getent shadow root 2>/dev/null | cut -d: -f2 || true)
    case "$shadow_pw" in
        '!'*) log "warning: root's password is locked ('!' in /etc/shadow); with UsePAM no sshd will reject root logins. Fix with: usermod -p '*' root" ;;
    esac

    local check
    if ! check=$("$SSHD" -t -f "$CONFIG" 2>&1); then
        printf '%s\n' "$check" | sed "s/^/$PROG: sshd -t: /" >&2
        die "sshd rejected config $CONFIG (see above)"
    fi

    : >"$LOGFILE"
    if ! "$SSHD" -f "$CONFIG" -E "$LOGFILE"; then
        tail -n 20 "$LOGFILE" | sed "s/^/$PROG: sshd.log: /" >&2 || true
        die "sshd failed to start (log: $LOGFILE)"
    fi

    for i in $(seq 1 100); do
        if port_open; then
            break
        fi
        sleep 0.1
    done
    if ! port_open; then
        tail -n 20 "$LOGFILE" | sed "s/^/$PROG: sshd.log: /" >&2 || true
        die "sshd did not accept connections on $LISTEN_HOST:$PORT within 10 s (log: $LOGFILE)"
    fi
    # Wait (briefly) for the pid file so that 'stop' works right away.
    for i in $(seq 1 50); do
        our_pid >/dev/null && break
        sleep 0.1
    done
    pid=$(our_pid) || die "port $PORT is open but no live sshd found via $PIDFILE (log: $LOGFILE)"
    log "started sshd pid $pid on $LISTEN_HOST:$PORT (log: $LOGFILE)"
    print_env
}

case "$ACTION" in
    start) do_start ;;
    stop) do_stop ;;
esac
