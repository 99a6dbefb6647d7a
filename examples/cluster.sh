#!/usr/bin/env bash
# A 5-site dbrep cluster on loopback, one `node` process per site:
# writes, SIGKILL of the master and one more site, writes continuing under
# a new master, restart of both and catch-up to identical data.
# Every process it starts is killed by PID at the end, also on Ctrl-C.
#
# Run from the repository root: examples/cluster.sh
# (BASE_PORT=5550 by default: sites listen on 5551-5555, clients on 6551-6555.)
set -euo pipefail

N=5
BASE=${BASE_PORT:-5550}
CBASE=$((BASE + 1000))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dbrep-cluster.XXXXXX")
declare -a PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

cargo build --quiet --example node
NODE=${CARGO_TARGET_DIR:-target}/debug/examples/node

start() { # start ID
    local id=$1 peers="" j
    for j in $(seq 1 $N); do
        [ "$j" != "$id" ] && peers="$peers${peers:+,}127.0.0.1:$((BASE + j))"
    done
    RUST_LOG=${RUST_LOG:-info} "$NODE" --id "$id" --listen "127.0.0.1:$((BASE + id))" \
        --client "127.0.0.1:$((CBASE + id))" --peers "$peers" --dir "$WORK/site$id" \
        --no-stdin 2>"$WORK/site$id.log" &
    PIDS[$id]=$!
}

ask() { # ask ID REQUEST: one request, one answer line (empty if the site is down)
    local reply=""
    if exec 3<>"/dev/tcp/127.0.0.1/$((CBASE + $1))" 2>/dev/null; then
        printf '%s\n' "$2" >&3
        IFS= read -r -t 10 reply <&3 || true
        exec 3>&-
    fi
    printf '%s' "$reply"
}

field() { # field ID KEY: one key=value from status
    ask "$1" status | tr ' ' '\n' | sed -n "s/^$2=//p"
}

wait_master() { # prints the id of a master every running site follows
    local tries id m ok
    for tries in $(seq 1 600); do
        for id in $(seq 1 $N); do
            [ -z "${PIDS[$id]}" ] && continue
            if [ "$(field "$id" role)" = master ]; then
                ok=yes
                for m in $(seq 1 $N); do
                    [ -z "${PIDS[$m]}" ] && continue
                    [ "$(field "$m" master)" = "$id" ] || ok=no
                done
                [ $ok = yes ] && { echo "$id"; return; }
            fi
        done
        sleep 0.2
    done
    echo "no master was elected" >&2
    exit 1
}

put() { # put KEY VALUE through MASTER, retrying until OK
    local tries reply
    for tries in $(seq 1 100); do
        reply=$(ask "$MASTER" "put $1 $2")
        case $reply in OK*) echo "  put $1 $2 -> $reply"; return ;; esac
        sleep 0.2
    done
    echo "put $1 was never answered OK (last: $reply)" >&2
    exit 1
}

show() {
    local id
    for id in $(seq 1 $N); do
        if [ -z "${PIDS[$id]}" ]; then
            echo "  site $id: killed"
        else
            echo "  site $id: $(ask "$id" status | cut -d' ' -f2-5,9,10)"
        fi
    done
}

converged() { # every running site has the master's digest and LSN
    local tries id want
    for tries in $(seq 1 600); do
        want="$(field "$MASTER" digest) $(field "$MASTER" lsn)"
        ok=yes
        for id in $(seq 1 $N); do
            [ -z "${PIDS[$id]}" ] && continue
            [ "$(field "$id" digest) $(field "$id" lsn)" = "$want" ] || ok=no
        done
        [ $ok = yes ] && return
        sleep 0.2
    done
    echo "the sites did not converge" >&2
    show
    exit 1
}

echo "== starting $N sites (data and logs in $WORK)"
for id in $(seq 1 $N); do PIDS[$id]=""; done
for id in $(seq 1 $N); do start "$id"; done
MASTER=$(wait_master)
echo "== site $MASTER is master"
for k in 1 2 3 4 5; do put "key$k" "first$k"; done
converged
show

OTHER=$(( MASTER % N + 1 ))
echo "== SIGKILL site $MASTER (the master) and site $OTHER"
kill -9 "${PIDS[$MASTER]}" "${PIDS[$OTHER]}"
wait "${PIDS[$MASTER]}" "${PIDS[$OTHER]}" 2>/dev/null || true
PIDS[$MASTER]=""; PIDS[$OTHER]=""
OLD=$MASTER
MASTER=$(wait_master)
echo "== site $MASTER is the new master; writes continue"
for k in 6 7 8 9 10; do put "key$k" "second$k"; done
show

echo "== restarting sites $OLD and $OTHER"
start "$OLD"; start "$OTHER"
MASTER=$(wait_master)
converged
echo "== every site holds identical data:"
show
for id in $(seq 1 $N); do
    echo "  site $id: key1=$(ask "$id" "get key1 stale") key10=$(ask "$id" "get key10 stale")"
done
echo "== members (static; replicated membership is not built yet): $(ask 1 members)"
echo "== done; stopping every site"
