#!/usr/bin/env bash
# Start or stop a standalone Spark 3.5 cluster on this machine: one master
# (spark://localhost:7077, web UI on localhost:8080) and one worker, on loopback.
#
#   scripts/spark_cluster.sh start | stop | status
#
# Spark's jars and launch scripts come from the pyspark source package on PyPI
# (unpacked by scripts/stage_jars.py, run here if needed); the Beam Spark job
# server of run_configs/spark_cluster.yaml runs on the same jars, so driver and
# executors agree.  Logs, work dirs and pid files live in $SPARK_CLUSTER_DIR
# (default /tmp/beam-dataprep/spark-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
SPARK_VERSION=3.5.0
export SPARK_HOME=${SPARK_HOME:-${BEAM_DATAPREP_CACHE:-$HOME/.apache_beam/cache}/dists/spark-$SPARK_VERSION}
DIR=${SPARK_CLUSTER_DIR:-/tmp/beam-dataprep/spark-cluster}
MASTER_PORT=${SPARK_MASTER_PORT:-7077}
UI_PORT=${SPARK_MASTER_WEBUI_PORT:-8080}
WORKER_UI_PORT=${SPARK_WORKER_WEBUI_PORT:-8082}
CORES=${SPARK_WORKER_CORES:-2}
MEMORY=${SPARK_WORKER_MEMORY:-3g}
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOG_DIR="$DIR/log" SPARK_PID_DIR="$DIR"

log() { echo "spark_cluster: $*" >&2; }

launch() {  # launch NAME CLASS ARGS...: one Spark daemon in the background, pid in DIR
  local name=$1; shift
  SPARK_DAEMON_MEMORY=512m nohup "$SPARK_HOME/bin/spark-class" "$@" \
    > "$DIR/log/$name.log" 2>&1 < /dev/null &
  echo $! > "$DIR/$name.pid"
}

. scripts/daemons.sh

alive_workers() {
  "$PYTHON" - "$UI_PORT" <<'PY' 2>/dev/null || echo 0
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(f"http://localhost:{sys.argv[1]}/json/", timeout=2))["aliveworkers"])
PY
}

start() {
  if running master || running worker; then
    log "already running (pids $(cat "$DIR"/*.pid | tr '\n' ' '))"; return 0
  fi
  [[ -x "$SPARK_HOME/bin/spark-class" ]] || "$PYTHON" scripts/stage_jars.py --only spark
  mkdir -p "$DIR/log" "$DIR/work"
  launch master org.apache.spark.deploy.master.Master \
    --host localhost --port "$MASTER_PORT" --webui-port "$UI_PORT"
  launch worker org.apache.spark.deploy.worker.Worker "spark://localhost:$MASTER_PORT" \
    --host localhost --cores "$CORES" --memory "$MEMORY" --webui-port "$WORKER_UI_PORT" \
    --work-dir "$DIR/work"
  for _ in $(seq 1 120); do
    if [[ "$(alive_workers)" -ge 1 ]]; then
      log "up: Spark $SPARK_VERSION, spark://localhost:$MASTER_PORT, $CORES cores (UI http://localhost:$UI_PORT, logs in $DIR/log)"
      return 0
    fi
    for p in master worker; do
      running $p || { log "$p died; last lines of $DIR/log/$p.log:"; tail -n 20 "$DIR/log/$p.log" >&2; stop; exit 1; }
    done
    sleep 1
  done
  log "no worker registered after 120 s; see $DIR/log"; stop; exit 1
}

stop() { stop_daemons worker master; }

status() {
  daemon_status master worker
  echo "workers alive: $(alive_workers)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
