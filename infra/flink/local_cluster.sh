#!/usr/bin/env bash
# A standalone Flink session cluster on this machine without Docker: the JobManager and one
# TaskManager run as plain JVMs from the jars of Flink's PyPI package apache-flink-libraries
# (flink-dist is not served by Maven Central here), bound to 127.0.0.1 only.
#
# usage: infra/flink/local_cluster.sh start|stop|status
#   start   fetch the jars once (pip download; cached), write the configuration, start the
#           JobManager + TaskManager, wait until the TaskManager has registered its slots,
#           then print the REST address (e.g. localhost:8081) for --flink_master
#   stop    stop both JVMs (by the pids recorded at start)
#   status  print the REST /overview answer
#
# Environment: FLINK_MINOR (1.19: match the Beam job server's Flink version) or FLINK_VERSION
# (default ${FLINK_MINOR}.0), REST_PORT (8081), RPC_PORT (6123), SLOTS (2),
# TM_MEMORY (1728m), JM_MEMORY (1024m), CLUSTER_DIR (configuration, logs, pids; default
# $SEA_CACHE/flink/cluster), SEA_CACHE (~/.cache/sea), PYTHON (python3), START_TIMEOUT (180 s).
# Exit status 3 when the cluster cannot be had here (no Java, jars not downloadable).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

PYTHON="${PYTHON:-python3}"
FLINK_MINOR="${FLINK_MINOR:-1.19}"
FLINK_VERSION="${FLINK_VERSION:-${FLINK_MINOR}.0}"
REST_PORT="${REST_PORT:-8081}"
RPC_PORT="${RPC_PORT:-6123}"
SLOTS="${SLOTS:-2}"
TM_MEMORY="${TM_MEMORY:-1728m}"
JM_MEMORY="${JM_MEMORY:-1024m}"
CACHE="$(flink_cache)"
CLUSTER_DIR="${CLUSTER_DIR:-${CACHE}/cluster}"
START_TIMEOUT="${START_TIMEOUT:-180}"
DIST="${CACHE}/flink-${FLINK_VERSION}"

# The JVM options Flink's own scripts add on Java 17 (env.java.opts.all of its default config).
JAVA17_OPTS=(
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED
  --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)

fetch_dist() {
  if [[ -f "${DIST}/lib/flink-dist-${FLINK_VERSION}.jar" ]]; then return 0; fi
  local work
  mkdir -p "${CACHE}"
  work="$(mktemp -d "${CACHE}/.dist-XXXXXX")"
  log "downloading apache-flink-libraries==${FLINK_VERSION} (PyPI sdist, ~230 MB) for its jars"
  if ! "${PYTHON}" -m pip download --quiet --no-deps --no-binary :all: -d "${work}" \
      "apache-flink-libraries==${FLINK_VERSION}" >"${work}/pip.log" 2>&1; then
    log "pip could not download apache-flink-libraries==${FLINK_VERSION}: $(tail -n 3 "${work}/pip.log")"
    rm -rf "${work}"
    exit 3
  fi
  tar -xzf "${work}"/apache-flink-libraries-*.tar.gz -C "${work}" --wildcards \
    '*/deps/lib/flink-dist-*.jar' '*/deps/lib/log4j-*.jar' '*/deps/bin/bash-java-utils.jar'
  mkdir -p "${work}/dist"
  mv "${work}"/apache-flink-libraries-*/deps/lib "${work}"/apache-flink-libraries-*/deps/bin "${work}/dist/"
  if [[ -d "${DIST}" ]]; then rm -rf "${work}"; return 0; fi
  mv -T "${work}/dist" "${DIST}"
  rm -rf "${work}"
}

write_conf() {
  mkdir -p "${CLUSTER_DIR}/conf" "${CLUSTER_DIR}/log" "${CLUSTER_DIR}/tmp"
  cat >"${CLUSTER_DIR}/conf/flink-conf.yaml" <<EOF
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: ${RPC_PORT}
jobmanager.bind-host: 127.0.0.1
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: ${REST_PORT}
taskmanager.numberOfTaskSlots: ${SLOTS}
parallelism.default: ${SLOTS}
jobmanager.memory.process.size: ${JM_MEMORY}
taskmanager.memory.process.size: ${TM_MEMORY}
io.tmp.dirs: ${CLUSTER_DIR}/tmp
web.tmpdir: ${CLUSTER_DIR}/tmp
EOF
  cat >"${CLUSTER_DIR}/conf/log4j.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %c - %m%n
EOF
}

# Flink's BashJavaUtils (what jobmanager.sh / taskmanager.sh call) turns the process sizes
# into JVM flags (first line) and the derived memory settings (second line).
resource_params() {
  java -cp "${DIST}/bin/bash-java-utils.jar:${DIST}/lib/*" \
    org.apache.flink.runtime.util.bash.BashJavaUtils "$1" --configDir "${CLUSTER_DIR}/conf" \
    2>/dev/null | sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p'
}

start_jvm() {  # name main-class
  local name="$1" main="$2" kind params jvm dyn
  kind="$([[ "${name}" == jobmanager ]] && echo JM || echo TM)"
  params="$(resource_params "GET_${kind}_RESOURCE_PARAMS")"
  jvm="$(sed -n 1p <<<"${params}")"
  dyn="$(sed -n 2p <<<"${params}")"
  [[ -n "${jvm}" ]] || { log "BashJavaUtils gave no ${kind} memory settings"; exit 1; }
  # shellcheck disable=SC2086  # jvm / dyn are lists of flags on purpose
  nohup java ${jvm} "${JAVA17_OPTS[@]}" \
    -Djava.io.tmpdir="${CLUSTER_DIR}/tmp" -Dlog.file="${CLUSTER_DIR}/log/${name}.log" \
    -Dlog4j.configurationFile="file:${CLUSTER_DIR}/conf/log4j.properties" \
    -cp "${DIST}/lib/*" "${main}" --configDir "${CLUSTER_DIR}/conf" ${dyn} \
    </dev/null >"${CLUSTER_DIR}/log/${name}.out" 2>&1 &
  echo $! >"${CLUSTER_DIR}/${name}.pid"
}

rest_get() {  # path -> JSON on stdout, non-zero exit while the endpoint is down
  "${PYTHON}" - "http://127.0.0.1:${REST_PORT}$1" <<'EOF'
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
EOF
}

free_slots() {
  rest_get /overview 2>/dev/null | "${PYTHON}" -c 'import json, sys; print(json.load(sys.stdin)["slots-available"])' \
    2>/dev/null || echo 0
}

stop_all() {
  local name pid
  for name in taskmanager jobmanager; do
    [[ -f "${CLUSTER_DIR}/${name}.pid" ]] || continue
    pid="$(cat "${CLUSTER_DIR}/${name}.pid")"
    if kill -0 "${pid}" 2>/dev/null; then
      kill "${pid}" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "${pid}" 2>/dev/null; then kill -9 "${pid}" 2>/dev/null || true; fi
      log "stopped ${name} (pid ${pid})"
    fi
    rm -f "${CLUSTER_DIR}/${name}.pid"
  done
}

case "${1:-}" in
  start)
    command -v java >/dev/null || { log "Java is not installed"; exit 3; }
    if [[ -f "${CLUSTER_DIR}/jobmanager.pid" ]] && kill -0 "$(cat "${CLUSTER_DIR}/jobmanager.pid")" 2>/dev/null; then
      log "already running (${CLUSTER_DIR}); stop it first"
      exit 1
    fi
    fetch_dist
    write_conf
    start_jvm jobmanager org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint
    start_jvm taskmanager org.apache.flink.runtime.taskexecutor.TaskManagerRunner
    deadline=$((SECONDS + START_TIMEOUT))
    until [[ "$(free_slots)" -ge "${SLOTS}" ]]; do
      for name in jobmanager taskmanager; do
        if ! kill -0 "$(cat "${CLUSTER_DIR}/${name}.pid")" 2>/dev/null; then
          log "${name} exited: $(tail -n 5 "${CLUSTER_DIR}/log/${name}.out" "${CLUSTER_DIR}/log/${name}.log" 2>/dev/null)"
          stop_all
          exit 1
        fi
      done
      if ((SECONDS > deadline)); then
        log "no TaskManager slots after ${START_TIMEOUT} s (logs: ${CLUSTER_DIR}/log)"
        stop_all
        exit 1
      fi
      sleep 1
    done
    log "Flink ${FLINK_VERSION} session cluster up: ${SLOTS} slots, REST on 127.0.0.1:${REST_PORT}"
    printf 'localhost:%s\n' "${REST_PORT}"
    ;;
  stop)
    stop_all
    ;;
  status)
    rest_get /overview
    ;;
  *)
    print_help
    [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && exit 0
    exit 2
    ;;
esac
