# fleet-data-lib.sh: sourced by fleet-data and fleet-cron.

FLAGS=/run/fleet-flags
READONLY=$FLAGS/readonly
HOLD=$FLAGS/hold       # with readonly: writes wait at the gate
FORWARD=$FLAGS/forward # the gate forwards to the ip:port it holds
BACKUPS=/var/backups/blog
# The app's write lock (its data volume, mounted read-only: flock needs
# no more).
WRITE_LOCK=${FLEET_WRITE_LOCK:-/var/lib/blog/.write.lock}
# The certificates' volume, mounted read-only (fleet-data tars it).
LE_DIR=${FLEET_LETSENCRYPT:-/etc/letsencrypt}

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
	rm -f "$LOOKUP_CACHE" # a stale lookup may be why: the next run looks again
	log "$*"
	exit 1
}

# LOOKUP_CACHE: what containers() found, for the runs that follow within
# LOOKUP_TTL seconds (a promote's pre-sync, freeze, final sync and forward
# come within a minute). A container's id changes only when compose
# recreates it; a command that fails on a stale id dies, and die removes
# the cache.
LOOKUP_CACHE=${FLEET_LOOKUP_CACHE:-/tmp/fleet-data.containers}
LOOKUP_TTL=120

# self_id: this container's id. Under compose the hostname is the short
# id (unless the service sets hostname:); /proc/self/mountinfo names the
# full id in the path of the bind-mounted /etc/hostname.
self_id() {
	id=$(sed -n 's|.*/containers/\([0-9a-f]\{64\}\)/hostname .*|\1|p' /proc/self/mountinfo | head -n 1)
	echo "${id:-$(hostname)}"
}

# project: this container's compose project, from its labels; else
# $COMPOSE_PROJECT_NAME.
project() {
	p=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$(self_id)" 2>/dev/null) || p=
	[ -n "$p" ] || p=${COMPOSE_PROJECT_NAME:-}
	[ -n "$p" ] || die "cannot tell this container's compose project (no Docker socket at /var/run/docker.sock, or not started by compose; set COMPOSE_PROJECT_NAME)"
	echo "$p"
}

# containers: every running service container of this project, looked up
# once for container() to answer from: one docker ps lists the running
# compose containers, this one among them (its project); each docker CLI
# start costs 0.1-0.2 s under load, and a freeze window pays for them.
# Call it in the main shell (not in $(...)), before container().
containers() {
	if cached_containers; then
		return
	fi
	all=$(docker ps --no-trunc \
		--filter "label=com.docker.compose.oneoff=False" \
		--filter status=running \
		--format '{{.ID}} {{.Label "com.docker.compose.project"}} {{.Label "com.docker.compose.service"}}') ||
		die "cannot list the running containers (no Docker socket at /var/run/docker.sock?)"
	self=$(self_id)
	CONTAINERS_OF=$(printf '%s\n' "$all" | while read -r id p _; do
		case $id in
		"$self"*)
			echo "$p"
			break
			;;
		esac
	done)
	if [ -z "$CONTAINERS_OF" ]; then
		CONTAINERS_OF=$(project) || exit 1 # not found by id: the labels, or $COMPOSE_PROJECT_NAME
	fi
	CONTAINERS=$(printf '%s\n' "$all" | while read -r id p s; do
		if [ "$p" = "$CONTAINERS_OF" ] && [ -n "$s" ]; then
			echo "$s $id"
		fi
	done)
	{ printf '%s\n%s\n' "$CONTAINERS_OF" "$CONTAINERS" >"$LOOKUP_CACHE.$$" && mv -f "$LOOKUP_CACHE.$$" "$LOOKUP_CACHE"; } 2>/dev/null ||
		rm -f "$LOOKUP_CACHE.$$"
}

# cached_containers: CONTAINERS_OF and CONTAINERS from a lookup less than
# LOOKUP_TTL seconds old.
cached_containers() {
	[ -f "$LOOKUP_CACHE" ] || return 1
	age=$(($(date +%s) - $(stat -c %Y "$LOOKUP_CACHE" 2>/dev/null || echo 0)))
	[ "$age" -ge 0 ] && [ "$age" -lt "$LOOKUP_TTL" ] || return 1
	{
		read -r CONTAINERS_OF
		CONTAINERS=$(cat)
	} <"$LOOKUP_CACHE" || return 1
	[ -n "$CONTAINERS_OF" ] && [ -n "$CONTAINERS" ]
}

# container SERVICE: the id of the running container of SERVICE in this
# project (not one-off `compose run` containers).
container() {
	if [ -n "${CONTAINERS_OF:-}" ]; then
		c=$(printf '%s\n' "$CONTAINERS" | while read -r s id; do
			if [ "$s" = "$1" ]; then
				echo "$id"
				break
			fi
		done)
		[ -n "$c" ] || die "no running $1 container in compose project $CONTAINERS_OF"
		echo "$c"
		return
	fi
	p=$(project) || exit 1
	c=$(docker ps -q --no-trunc \
		--filter "label=com.docker.compose.project=$p" \
		--filter "label=com.docker.compose.service=$1" \
		--filter "label=com.docker.compose.oneoff=False" \
		--filter status=running | head -n 1)
	[ -n "$c" ] || die "no running $1 container in compose project $p"
	echo "$c"
}

frozen() { [ -e "$READONLY" ]; }
