#!/bin/sh
# make-repo.sh DIR [VERSION...]: a throwaway git repository with one tagged
# commit per release of the blog stack, as the end-to-end suite builds it
# (e2e/blogkit.BuildReleaseRepo; its test checks both give the same trees).
#
#   1. stacks/blog is copied to DIR/stacks/blog; if MAKE_REPO_SETUP is set,
#      it runs (sh -c) in DIR to add what a deploy needs besides the stack
#      (droplets.yaml, cloud-init/, keys/, a .gitignore), so every tag has
#      it; then "release v1.0.0" is committed and tagged v1.0.0.
#   2. Each later release, in version order, is the overlay
#      stacks/blog-releases/vX.Y.Z/: the paths its DELETE file lists
#      (relative to stacks/blog; blank lines and # comments skipped; each
#      must exist) are removed, its other files are copied over
#      DIR/stacks/blog/, and "release vX.Y.Z" is committed and tagged.
#
# VERSIONs pick the tags (default: all; v1.0.0 must be one). A release not
# picked but older than a picked one is still applied, folded into the next
# picked one. DIR must not exist or be empty.
#
#   MAKE_REPO_SETUP='cp ~/blog/droplets.yaml .' stacks/blog-releases/make-repo.sh /tmp/blog
set -eu

die() { echo "make-repo.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: make-repo.sh DIR [VERSION...]"
dst=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
releases=$root/stacks/blog-releases

# All versions: v1.0.0 and the overlay directories, in version order.
all=$( { echo v1.0.0; for d in "$releases"/v*; do
	[ -d "$d" ] || continue
	v=${d##*/}
	echo "$v" | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+$' && [ "$v" != v1.0.0 ] && echo "$v"
done; } | sort -t. -k1.2,1n -k2,2n -k3,3n)

if [ $# -eq 0 ]; then
	set -- $all
fi
wanted=" "
last=v1.0.0
for v in "$@"; do
	echo "$all" | grep -qx -- "$v" || die "no release $v: $releases has $(echo $all)"
	wanted="$wanted$v "
	last=$(printf '%s\n%s\n' "$last" "$v" | sort -t. -k1.2,1n -k2,2n -k3,3n | tail -n 1)
done
case $wanted in *" v1.0.0 "*) ;; *) die "the versions must include v1.0.0, the first commit" ;; esac

if [ -e "$dst" ] && [ -n "$(ls -A "$dst")" ]; then
	die "$dst exists and is not empty"
fi
mkdir -p "$dst"
dst=$(cd "$dst" && pwd)

export GIT_AUTHOR_NAME=fleet-e2e GIT_AUTHOR_EMAIL=fleet-e2e@example.com
export GIT_COMMITTER_NAME=fleet-e2e GIT_COMMITTER_EMAIL=fleet-e2e@example.com
export GIT_CONFIG_NOSYSTEM=1

commit() {
	git -C "$dst" add -A
	git -C "$dst" commit -q --allow-empty -m "release $1"
	git -C "$dst" tag "$1"
	echo "$1"
}

mkdir -p "$dst/stacks"
# Modes only, not times: a replaced file of the same size with a preserved
# mtime (and a reused inode) would look unchanged to git add.
cp -PR --preserve=mode "$root/stacks/blog" "$dst/stacks/blog"
if [ -n "${MAKE_REPO_SETUP:-}" ]; then
	(cd "$dst" && sh -c "$MAKE_REPO_SETUP") || die "MAKE_REPO_SETUP failed"
fi
git -C "$dst" init -q -b main
commit v1.0.0

for v in $all; do
	[ "$v" = v1.0.0 ] && continue
	# past the last picked version: stop
	[ "$(printf '%s\n%s\n' "$last" "$v" | sort -t. -k1.2,1n -k2,2n -k3,3n | tail -n 1)" = "$last" ] || break
	overlay=$releases/$v
	if [ -f "$overlay/DELETE" ]; then
		n=0
		while IFS= read -r line || [ -n "$line" ]; do
			n=$((n + 1))
			p=$(printf '%s' "$line" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
			case $p in '' | '#'*) continue ;; esac
			case /$p/ in
			//* | */../* | /./ | /../) die "$overlay/DELETE:$n: \"$p\" is not a path inside stacks/blog" ;;
			esac
			[ -e "$dst/stacks/blog/$p" ] || [ -L "$dst/stacks/blog/$p" ] ||
				die "$overlay/DELETE:$n: $p: no such file to delete"
			rm -rf "$dst/stacks/blog/$p"
		done <"$overlay/DELETE"
	fi
	# copy the overlay (not its DELETE) over the stack: files replace
	(cd "$overlay" && find . -mindepth 1 ! -path ./DELETE -print) | while IFS= read -r f; do
		f=${f#./}
		if [ -d "$overlay/$f" ] && [ ! -L "$overlay/$f" ]; then
			[ -d "$dst/stacks/blog/$f" ] && [ ! -L "$dst/stacks/blog/$f" ] || { rm -rf "$dst/stacks/blog/$f"; mkdir -p "$dst/stacks/blog/$f"; }
		else
			rm -rf "$dst/stacks/blog/$f"
			cp -P --preserve=mode "$overlay/$f" "$dst/stacks/blog/$f"
		fi
	done
	case $wanted in *" $v "*) commit "$v" ;; esac
done
