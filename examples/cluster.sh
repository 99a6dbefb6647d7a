#!/usr/bin/env bash
# A dbrep cluster on loopback, one `node` process per site, with replicated
# group membership: site 1 founds the group (--bootstrap), sites 2-5 join it
# by naming site 1; writes, SIGKILL of the master and one more site, writes
# continuing under a new master, restart of both and catch-up to identical
# data; then a sixth site joins the running group through one member.
# Every process it starts is killed by PID at the end, also on Ctrl-C.
#
# Run from the repository root: examples/cluster.sh
# (BASE_PORT=5550 by default: sites listen on 5551-5556, clients on 6551-6556.)
set -euo pipefail

N=5   # sites started first; a sixth joins at the end
ALL=6
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

cargo build --release --quiet --example node
NODE=${CARGO_TARGET_DIR:-target}/release/examples/node

start() { # start ID [PEER_ID]: site 1 founds the group; the others join via PEER_ID (default 1)
    local id=$1 via=${2:-1} group
    if [ "$id" = 1 ]; then
        group=(--bootstrap)   # ignored on a restart: the group is in its log
    else
        group=(--peers "127.0.0.1:$((BASE + via))")
    fi
    RUST_LOG=${RUST_LOG:-info} "$NODE" --id "$id" --listen "127.0.0.1:$((BASE + id))" \
        --client "127.0.0.1:$((CBASE + id))" "${group[@]}" --dir "$WORK/site$id" \
        --no-stdin 2>"$WORK/site$id.log" &
    PIDS[$id]=$!
}

members_of() { # members_of ID: how many members the site lists
    ask "$1" members | sed -n 's/^MEMBERS //p' | tr ' ' '\n' | grep -c @ || true
}

wait_members() { # wait_members ID COUNT
    local tries
    for tries in $(seq 1 600); do
        [ "$(members_of "$1")" = "$2" ] && return
        sleep 0.2
    done
    echo "site $1 never listed $2 members (last: $(ask "$1" members))" >&2
    exit 1
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
        for id in $(seq 1 $ALL); do
            [ -z "${PIDS[$id]}" ] && continue
            if [ "$(field "$id" role)" = master ]; then
                ok=yes
                for m in $(seq 1 $ALL); do
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
    for id in $(seq 1 $ALL); do
        if [ -z "${PIDS[$id]}" ]; then
            [ "$id" -gt "$N" ] && continue
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
        for id in $(seq 1 $ALL); do
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

echo "== starting $N sites (data and logs in $WORK): site 1 founds the group, 2-$N join"
for id in $(seq 1 $ALL); do PIDS[$id]=""; done
for id in $(seq 1 $N); do start "$id"; done
wait_members 1 $N
echo "== members: $(ask 1 members)"
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

VIA=$(( MASTER % N + 1 ))
echo "== site $ALL joins the running group, naming only site $VIA"
start "$ALL" "$VIA"
wait_members "$MASTER" $ALL
put key11 third11
converged
echo "== members: $(ask "$MASTER" members)"
show
echo "  site $ALL: key1=$(ask "$ALL" "get key1 stale") key11=$(ask "$ALL" "get key11 stale")"
echo "== done; stopping every site"
