#!/usr/bin/env bash
# Start or stop a standalone Flink session cluster on this machine: one JobManager
# (REST and web UI on localhost:8081) and one TaskManager, both bound to loopback.
#
#   scripts/flink_cluster.sh start | stop | status
#
# Flink's jars come from the apache-flink-libraries package on PyPI (unpacked by
# scripts/stage_jars.py, run here if needed), the Flink release that Beam's job
# server in run_configs/flink_cluster.yaml is built against.  Beam's runner jars
# are on the JobManager's and TaskManager's class path too, so that job server
# (the "prestaged" one) attaches no jars to its jobs: Beam's classes load once
# per cluster, not once per job.  Logs, config and pid files live in
# $FLINK_CLUSTER_DIR (default /tmp/beam-dataprep/flink-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
FLINK_VERSION=1.19.0
FLINK_HOME=${FLINK_HOME:-${BEAM_DATAPREP_CACHE:-$HOME/.apache_beam/cache}/dists/flink-$FLINK_VERSION}
BEAM_CLASSPATH=${BEAM_DATAPREP_CACHE:-$HOME/.apache_beam/cache}/jars/beam-dataprep-flink-1.19-cluster.classpath
DIR=${FLINK_CLUSTER_DIR:-/tmp/beam-dataprep/flink-cluster}
REST_PORT=${FLINK_REST_PORT:-8081}
SLOTS=${FLINK_TASK_SLOTS:-2}
# What Flink's own launch scripts pass on Java 17.
JAVA_OPENS=(--add-exports=java.base/sun.net.util=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.text=ALL-UNNAMED
  --add-opens=java.base/java.time=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED)

log() { echo "flink_cluster: $*" >&2; }

write_config() {
  mkdir -p "$DIR/conf" "$DIR/log" "$DIR/tmp"
  cat > "$DIR/conf/config.yaml" <<CONF
jobmanager:
  rpc: {address: localhost, port: 6123}
  bind-host: 127.0.0.1
  memory: {process: {size: 1024m}}
taskmanager:
  host: localhost
  bind-host: 127.0.0.1
  numberOfTaskSlots: $SLOTS
  # Beam's batch jobs fuse into many operators per slot, each wanting network
  # buffers; its portable runner hardly uses Flink's managed memory.  prepare_corpus
  # on refs has more shuffles and side inputs deployed at once: with 512m (16,384
  # buffers) a task found 469 of the 512 it needs ("Insufficient number of network
  # buffers"), so 1 GiB.
  memory: {process: {size: 3584m}, network: {min: 1024m, max: 1024m}, managed: {fraction: 0.1}}
rest: {address: localhost, bind-address: 127.0.0.1, port: $REST_PORT}
# Deploying the many tasks of a large Beam job to a TaskManager on a busy 2-core
# machine can take longer than the 10 s default and would fail the job.
pekko: {ask: {timeout: 60 s}}
parallelism: {default: $SLOTS}
io: {tmp: {dirs: $DIR/tmp}}
CONF
  cat > "$DIR/conf/log4j.properties" <<CONF
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.append = true
appender.main.fileName = \${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
CONF
}

resource_params() {  # resource_params JM|TM: Flink's own sizing -> "JVM options" and "dynamic -D configs" lines
  java -cp "$FLINK_HOME/bin/bash-java-utils.jar:$FLINK_HOME/lib/*" \
    org.apache.flink.runtime.util.bash.BashJavaUtils "GET_$1_RESOURCE_PARAMS" --configDir "$DIR/conf" \
    2>/dev/null | sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p'
}

launch() {  # launch NAME JM|TM MAIN_CLASS: one Flink process in the background, pid in DIR
  local name=$1 kind=$2 main=$3 jvm dynamic params
  params=$(resource_params "$kind")
  jvm=$(sed -n 1p <<< "$params"); dynamic=$(sed -n 2p <<< "$params")
  [[ -n "$jvm" ]] || { log "cannot size the $name from $DIR/conf/config.yaml"; exit 1; }
  # shellcheck disable=SC2086 # the sizing lines are lists of options
  nohup java $jvm "${JAVA_OPENS[@]}" \
    -Dlog.file="$DIR/log/$name.log" -Dlog4j.configurationFile="file:$DIR/conf/log4j.properties" \
    -cp "$FLINK_HOME/lib/*:$(cat "$BEAM_CLASSPATH")" "$main" --configDir "$DIR/conf" $dynamic \
    > "$DIR/log/$name.out" 2>&1 < /dev/null &
  echo $! > "$DIR/$name.pid"
}

. scripts/daemons.sh

taskmanagers() {
  "$PYTHON" - "$REST_PORT" <<'PY' 2>/dev/null || echo 0
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(f"http://localhost:{sys.argv[1]}/overview", timeout=2))["taskmanagers"])
PY
}

start() {
  if running jobmanager || running taskmanager; then
    log "already running (pids $(cat "$DIR"/*.pid | tr '\n' ' '))"; return 0
  fi
  [[ -f "$FLINK_HOME/bin/bash-java-utils.jar" && -f "$BEAM_CLASSPATH" ]] || "$PYTHON" scripts/stage_jars.py --only flink
  write_config
  launch jobmanager JM org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint
  launch taskmanager TM org.apache.flink.runtime.taskexecutor.TaskManagerRunner
  for _ in $(seq 1 120); do
    if [[ "$(taskmanagers)" -ge 1 ]]; then
      log "up: Flink $FLINK_VERSION, REST on http://localhost:$REST_PORT, $SLOTS slots (logs in $DIR/log)"
      return 0
    fi
    for p in jobmanager taskmanager; do
      running $p || { log "$p died; last lines of $DIR/log/$p.*:"; tail -n 20 "$DIR/log/$p".* >&2; stop; exit 1; }
    done
    sleep 1
  done
  log "no TaskManager registered after 120 s; see $DIR/log"; stop; exit 1
}

stop() { stop_daemons taskmanager jobmanager; }

status() {
  daemon_status jobmanager taskmanager
  echo "taskmanagers registered: $(taskmanagers)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
