#!/usr/bin/env bash
# cluster.sh: a LiteFS cluster of two nodes on this machine's loopback, a
# primary and a replica, each running recipeapi under `litefs mount`.
#
#   deploy/litefs/cluster.sh          start it, run the README's curl
#                                     walk-through against the replica,
#                                     print the lags it measured, stop it
#   deploy/litefs/cluster.sh start DIR    start it in DIR, and leave it up
#   deploy/litefs/cluster.sh stop DIR     stop the cluster started in DIR
#
# It needs /dev/fuse, fusermount3 (Debian: fuse3), and litefs v0.5.14
# (CGO_ENABLED=0 go install github.com/superfly/litefs/cmd/litefs@v0.5.14),
# run by root or by a user allowed to mount FUSE. It builds recipeapi with
# go build unless RECIPEAPI names a binary. Everything listens on 127.0.0.1
# only; the ports below may be changed through the environment.
set -euo pipefail
export LC_ALL=C # a dot in EPOCHREALTIME, and [[ < ]] by bytes

here="$(cd "$(dirname "$0")" && pwd)"
: "${PRIMARY_PORT:=18711}"        # the primary's recipeapi
: "${REPLICA_PORT:=18712}"        # the replica's recipeapi
: "${PRIMARY_LITEFS_PORT:=20202}" # the primary's LiteFS API
: "${REPLICA_LITEFS_PORT:=20203}" # the replica's LiteFS API
litefs="${LITEFS:-$(command -v litefs || echo "${GOPATH:-$HOME/go}/bin/litefs")}"

fail() {
	echo "cluster.sh: $*" >&2
	exit 1
}

# wait_healthy URL DIR NODE: wait for URL/healthz, at most 60 s, while the
# node's LiteFS runs.
wait_healthy() {
	for _ in $(seq 600); do
		if curl -sf --max-time 2 -o /dev/null "$1/healthz"; then
			return 0
		fi
		kill -0 "$(cat "$2/$3.pid")" 2>/dev/null || break
		sleep 0.1
	done
	tail -20 "$2/$3.log" >&2
	fail "the $3 at $1 did not become healthy (its log is above)"
}

# start_node DIR NAME CONFIG PORT LITEFS_PORT
start_node() {
	local dir="$1/$2"
	mkdir -p "$dir/mnt" "$dir/data"
	# setsid: the node is its own process group, which stop ends whole.
	LITEFS_MOUNT="$dir/mnt" LITEFS_DATA="$dir/data" \
		LITEFS_ADDR="127.0.0.1:$5" LITEFS_PRIMARY="127.0.0.1:$PRIMARY_LITEFS_PORT" \
		RECIPEAPI_PRIMARY="127.0.0.1:$PRIMARY_PORT" RECIPEAPI="$recipeapi" \
		ADDR="127.0.0.1:$4" DATABASE_PATH="$dir/mnt/recipe.db" \
		setsid "$litefs" mount -config "$here/$3" >"$1/$2.log" 2>&1 &
	echo $! >"$1/$2.pid"
}

start() {
	local dir="$1"
	[ -e /dev/fuse ] || fail "/dev/fuse is missing: LiteFS needs FUSE"
	command -v fusermount3 >/dev/null || fail "fusermount3 is missing (Debian: apt-get install fuse3)"
	[ -x "$litefs" ] || fail "litefs is missing: CGO_ENABLED=0 go install github.com/superfly/litefs/cmd/litefs@v0.5.14, or set LITEFS"
	local port
	for port in "$PRIMARY_PORT" "$REPLICA_PORT" "$PRIMARY_LITEFS_PORT" "$REPLICA_LITEFS_PORT"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			fail "127.0.0.1:$port is taken (is another cluster running? cluster.sh stop DIR stops it)"
		fi
	done
	mkdir -p "$dir"
	recipeapi="${RECIPEAPI:-}"
	if [ -z "$recipeapi" ]; then
		recipeapi="$dir/recipeapi"
		(cd "$here/../.." && CGO_ENABLED=0 go build -o "$recipeapi" .)
	fi
	# Both nodes need the same secret: without JWT_SECRET, the replica
	# reads the one that the primary keeps in the database. Cost 10, not
	# 12, so that the walk-through does not wait on bcrypt.
	export BCRYPT_COST="${BCRYPT_COST:-10}"
	export FIRST_SUPERUSER_PW="${FIRST_SUPERUSER_PW:-cluster-superuser-password}"
	start_node "$dir" primary primary.yml "$PRIMARY_PORT" "$PRIMARY_LITEFS_PORT"
	wait_healthy "http://127.0.0.1:$PRIMARY_PORT" "$dir" primary
	start_node "$dir" replica replica.yml "$REPLICA_PORT" "$REPLICA_LITEFS_PORT"
	wait_healthy "http://127.0.0.1:$REPLICA_PORT" "$dir" replica
	echo "primary: http://127.0.0.1:$PRIMARY_PORT (log $dir/primary.log)"
	echo "replica: http://127.0.0.1:$REPLICA_PORT (log $dir/replica.log)"
}

# stop DIR: SIGTERM to each node's LiteFS, which passes it to recipeapi and
# unmounts once it has stopped; after 15 s, SIGKILL and a lazy unmount.
stop() {
	local dir="$1" node pid
	for node in replica primary; do
		[ -f "$dir/$node.pid" ] || continue
		pid=$(cat "$dir/$node.pid")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL -- "-$pid" 2>/dev/null || true
		fi
		if mountpoint -q "$dir/$node/mnt" 2>/dev/null; then
			fusermount3 -uz "$dir/$node/mnt" || true
		fi
		rm -f "$dir/$node.pid"
	done
}

# started, then elapsed_us: microseconds since, by bash's own clock
# (EPOCHREALTIME), which starts no process.
started() { started_at="${EPOCHREALTIME/./}"; }
elapsed_us() { echo $((${EPOCHREALTIME/./} - started_at)); }

# await_position DIR: wait until the replica's LiteFS position (the TXID
# in its -pos file) reaches the primary's, reading both with bash alone.
await_position() {
	local want have
	read -r want <"$1/primary/mnt/recipe.db-pos"
	want="${want%%/*}"
	while read -r have <"$1/replica/mnt/recipe.db-pos"; [[ "${have%%/*}" < "$want" ]]; do
		(($(elapsed_us) < 5000000)) || fail "the replica's position did not reach $want in 5 s"
	done
}

# expect STATUS WHAT CURL-ARGS...: run curl, insist on STATUS, and keep the
# body in $body.
expect() {
	local want="$1" what="$2" status
	shift 2
	body=$(curl -s --max-time 10 -w '\n%{http_code}' "$@")
	status="${body##*$'\n'}"
	body="${body%$'\n'*}"
	if [ "$status" != "$want" ]; then
		fail "$what: want $want, got $status: $body"
	fi
	printf '%-44s %s\n' "$what" "$status"
}

field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$body"; }

# status_on_replica PATH [TOKEN]: the status of a GET of PATH on the
# replica, through bash's /dev/tcp, so that the lags count no curl start.
status_on_replica() {
	local status
	exec 3<>"/dev/tcp/127.0.0.1/$REPLICA_PORT"
	printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' "$1" "${2:-none}" >&3
	read -r -t 5 _ status _ <&3 || true
	exec 3>&-
	echo "$status"
}

# summary MICROSECONDS...: p50, p90 and the worst, in milliseconds
# (nearest rank).
summary() {
	printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1/1000}
		function at(p) { i=int((p*NR+99)/100); return v[i<1?1:i] }
		END {printf "p50 %.1f, p90 %.1f, worst %.1f", at(50), at(90), v[NR]}'
}

demo() {
	demo_dir="$(mktemp -d)" # global: the trap runs after demo returns
	trap 'stop "$demo_dir"; rm -rf "$demo_dir"' EXIT
	local dir="$demo_dir"
	start "$dir"
	local p="http://127.0.0.1:$PRIMARY_PORT" r="http://127.0.0.1:$REPLICA_PORT"
	local email="cook-$RANDOM@example.com"

	echo
	echo "The README's walk-through, every request sent to the replica:"
	expect 201 "sign up" -X POST "$r/api/v1/auth/signup" -H 'Content-Type: application/json' \
		-d "{\"email\": \"$email\", \"password\": \"correct horse\", \"first_name\": \"Ada\"}"
	expect 200 "log in" -X POST "$r/api/v1/auth/login" -d "username=$email" -d 'password=correct horse'
	local token refresh id
	token=$(field access_token)
	refresh=$(field refresh_token)
	expect 200 "who am I" "$r/api/v1/auth/me" -H "Authorization: Bearer $token"
	expect 201 "add a recipe" -X POST "$r/api/v1/recipes/" -H "Authorization: Bearer $token" \
		-H 'Content-Type: application/json' \
		-d '{"label": "Chicken Soup", "source": "Grandma", "url": "https://example.com/soup"}'
	id=$(field id)
	expect 200 "read it back from the replica at once" "$r/api/v1/recipes/$id"
	expect 200 "find it" "$r/api/v1/recipes/search/?keyword=chicken&max_results=10"
	grep -q "\"id\":$id," <<<"$body" || fail "the search on the replica did not find recipe $id: $body"
	expect 200 "my recipes" "$r/api/v1/recipes/my-recipes/?skip=0&limit=100" -H "Authorization: Bearer $token"
	expect 200 "change it" -X PUT "$r/api/v1/recipes/$id" -H "Authorization: Bearer $token" \
		-H 'Content-Type: application/json' \
		-d '{"label": "Chicken Noodle Soup", "source": "Grandma", "url": "https://example.com/soup"}'
	expect 200 "read the change back from the replica" "$r/api/v1/recipes/$id"
	grep -q 'Chicken Noodle Soup' <<<"$body" || fail "the replica did not show the change: $body"
	expect 204 "delete it" -X DELETE "$r/api/v1/recipes/$id" -H "Authorization: Bearer $token"
	expect 404 "it is gone from the replica" "$r/api/v1/recipes/$id"
	expect 200 "refresh" -X POST "$r/api/v1/auth/refresh" -d grant_type=refresh_token -d "refresh_token=$refresh"
	token=$(field access_token)
	expect 200 "change the password" -X POST "$r/api/v1/auth/password" -H "Authorization: Bearer $token" \
		-H 'Content-Type: application/json' \
		-d '{"current_password": "correct horse", "new_password": "battery staple"}'
	token=$(field access_token)
	expect 204 "log out" -X POST "$r/api/v1/auth/logout" -H "Authorization: Bearer $token"
	expect 401 "the token is refused on the replica at once" "$r/api/v1/auth/me" -H "Authorization: Bearer $token"

	echo
	echo "Lags, from the primary's answer until the replica's LiteFS position"
	echo "reaches the primary's, and until a read on the replica shows the write:"
	expect 200 "log in on the primary" -X POST "$p/api/v1/auth/login" -d "username=$email" -d 'password=battery staple'
	token=$(field access_token)
	local position=() replication=() revocation=() i
	for i in $(seq 10); do
		body=$(curl -sf --max-time 10 -X POST "$p/api/v1/recipes/" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
			-d "{\"label\": \"Lag $i\", \"source\": \"cluster.sh\", \"url\": \"https://example.com/$i\"}")
		started
		await_position "$dir"
		position+=($(elapsed_us))
		[[ $body =~ \"id\":([0-9]+) ]] || fail "no id in $body"
		id="${BASH_REMATCH[1]}"
		until [ "$(status_on_replica "/api/v1/recipes/$id")" = 200 ]; do
			(($(elapsed_us) < 5000000)) || fail "recipe $id did not reach the replica in 5 s"
		done
		replication+=($(elapsed_us))
	done
	for i in $(seq 5); do
		body=$(curl -sf --max-time 10 -X POST "$p/api/v1/auth/login" -d "username=$email" -d 'password=battery staple')
		token=$(field access_token)
		curl -sf --max-time 10 -o /dev/null "$r/api/v1/auth/me" -H "Authorization: Bearer $token" || fail "a new token was refused on the replica"
		curl -sf --max-time 10 -o /dev/null -X POST "$p/api/v1/auth/logout" -H "Authorization: Bearer $token"
		started
		until [ "$(status_on_replica /api/v1/auth/me "$token")" = 401 ]; do
			(($(elapsed_us) < 5000000)) || fail "a logout did not reach the replica in 5 s"
		done
		revocation+=($(elapsed_us))
	done
	echo "replication lag, a recipe created on the primary (ms, of 10):"
	echo "  position reached: $(summary "${position[@]}")"
	echo "  read on the replica: $(summary "${replication[@]}")"
	echo "revocation lag, a logout on the primary until the replica refuses the token (ms, of 5):"
	echo "  $(summary "${revocation[@]}")"
	if grep -q 'status=500' "$dir/primary.log" "$dir/replica.log"; then
		fail "a node answered 500: $(grep -h 'status=500' "$dir/primary.log" "$dir/replica.log")"
	fi
	echo "no 500 in either node's log"
}

case "${1:-demo}" in
demo) demo ;;
start) start "${2:?usage: cluster.sh start DIR}" ;;
stop) stop "${2:?usage: cluster.sh stop DIR}" ;;
*) fail "usage: cluster.sh [demo | start DIR | stop DIR]" ;;
esac
