# Shared by the *_cluster.sh scripts: daemons tracked by pid files in $DIR.
# The sourcing script defines DIR and log().

running() { [[ -f "$DIR/$1.pid" ]] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

stop_daemons() {  # stop_daemons NAME...: in the order given, TERM then KILL after 30 s
  local p pid
  for p in "$@"; do
    if running "$p"; then
      pid=$(cat "$DIR/$p.pid")
      kill "$pid"
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $p ($pid)"
    fi
    rm -f "$DIR/$p.pid"
  done
}

daemon_status() {  # daemon_status NAME...: one line each
  local p
  for p in "$@"; do
    if running "$p"; then echo "$p: running (pid $(cat "$DIR/$p.pid"))"; else echo "$p: stopped"; fi
  done
}
