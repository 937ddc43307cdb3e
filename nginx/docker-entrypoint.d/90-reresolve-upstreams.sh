#!/bin/sh
# Nginx resolves the upstream's host names only when it loads its configuration. Docker
# may give a replica that restarts or is recreated a new address, and Nginx would keep
# sending its clients to the old one. This watcher, started by the nginx image's
# entrypoint, resolves the names again every few seconds and reloads Nginx when an
# address has changed. A reload is graceful: open WebSockets stay where they are.
set -eu

site="${KINDMAP_NGINX_SITE:-/etc/nginx/conf.d/kindmap_api.conf}"
interval="${KINDMAP_RERESOLVE_SECONDS:-5}"
hosts="$(sed -n 's/^[[:space:]]*server[[:space:]]\{1,\}\([A-Za-z0-9.-]\{1,\}\):[0-9].*/\1/p' "$site")"

addresses() {
    for host in $hosts; do
        printf '%s %s\n' "$host" "$(getent ahostsv4 "$host" | awk '{print $1}' | sort -u | tr '\n' ' ')"
    done
}

watch() {
    known="$(addresses)"
    waiting=""
    echo "kindmap: re-resolving upstream peers every ${interval}s:" $known >&2
    while sleep "$interval"; do
        current="$(addresses)"
        [ "$current" = "$known" ] && continue
        # Docker's DNS forgets a stopped container, and Nginx refuses a configuration
        # whose names do not all resolve: reload once every replica has an address.
        if nginx -t -q 2>/dev/null; then
            echo "kindmap: upstream addresses changed, reloading nginx:" $current >&2
            nginx -s reload && known="$current"
        elif [ "$current" != "$waiting" ]; then
            echo "kindmap: not reloading until every upstream peer resolves:" $current >&2
            waiting="$current"
        fi
    done
}

if [ "${KINDMAP_RERESOLVE_FOREGROUND:-0}" = 1 ]; then
    watch
else
    watch &
fi
