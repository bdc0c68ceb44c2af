#!/usr/bin/env bash
# Fetch the Beam Flink job-server jar with Maven (once; cached) and print its path.
#
# usage: infra/flink/get_job_server.sh          # prints e.g. ~/.cache/sea/flink/.../*.jar
#
# Preference order (the first that Maven Central serves wins; see infra/flink/README.md):
#   1. the official shaded job server org.apache.beam:beam-runners-flink-<F>-job-server:<SDK>
#      for every Flink version <F> that the installed Python SDK's FlinkRunner supports
#      (FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS, newest first) at the SDK's own version;
#   2. the same job server assembled from its Maven modules at a neighbouring Beam version
#      (FALLBACKS, "<flink minor>:<beam version>" pairs): `mvn dependency:copy-dependencies`
#      of org.apache.beam:beam-runners-flink-<F>:<V> into lib/, plus a launcher jar whose
#      manifest has Main-Class FlinkJobServerDriver and Class-Path lib/*.jar, which is what
#      `java -jar` (Beam's FlinkRunner, --flink_job_server_jar) needs.
#
# Environment: SEA_CACHE (default ~/.cache/sea; the jar goes to $SEA_CACHE/flink),
# SDK_VERSION (default: the installed apache_beam's, via $PYTHON, else 2.77.0),
# FLINK_VERSIONS (default "2.2 2.1 2.0 1.20 1.19"), FALLBACKS (default "1.19:2.62.0"),
# MVN (mvn), PYTHON (python3). FLINK_JOB_SERVER_JAR, when it names an existing file,
# is printed as is. Exit status 3 when no candidate could be fetched.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

PYTHON="${PYTHON:-python3}"
MVN="${MVN:-mvn}"
CACHE="$(flink_cache)"
FLINK_VERSIONS="${FLINK_VERSIONS:-2.2 2.1 2.0 1.20 1.19}"
FALLBACKS="${FALLBACKS:-1.19:2.62.0}"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

case "${1:-}" in
  -h|--help)
    print_help
    exit 0
    ;;
esac

if [[ -n "${FLINK_JOB_SERVER_JAR:-}" && -f "${FLINK_JOB_SERVER_JAR}" ]]; then
  printf '%s\n' "${FLINK_JOB_SERVER_JAR}"
  exit 0
fi

if [[ -z "${SDK_VERSION:-}" ]]; then
  SDK_VERSION="$("${PYTHON}" -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null || echo 2.77.0)"
fi

official_jar() { printf '%s/beam-runners-flink-%s-job-server-%s.jar' "${CACHE}" "$1" "$2"; }
assembled_jar() {
  printf '%s/beam-runners-flink-%s-job-server-%s-assembled/beam-runners-flink-%s-job-server-%s.jar' \
    "${CACHE}" "$1" "$2" "$1" "$2"
}

# Cached already? (same preference order)
for fv in ${FLINK_VERSIONS}; do
  jar="$(official_jar "${fv}" "${SDK_VERSION}")"
  if [[ -f "${jar}" ]]; then printf '%s\n' "${jar}"; exit 0; fi
done
for pair in ${FALLBACKS}; do
  jar="$(assembled_jar "${pair%%:*}" "${pair##*:}")"
  if [[ -f "${jar}" ]]; then printf '%s\n' "${jar}"; exit 0; fi
done

command -v "${MVN}" >/dev/null || { log "Maven (${MVN}) is not installed"; exit 3; }
mkdir -p "${CACHE}"

# 1. the official shaded job-server jar at the SDK's version
for fv in ${FLINK_VERSIONS}; do
  coords="org.apache.beam:beam-runners-flink-${fv}-job-server:${SDK_VERSION}"
  if "${MVN}" -B -q "${DEP_PLUGIN}:copy" -Dartifact="${coords}" -DoutputDirectory="${CACHE}" \
      >"${CACHE}/mvn-official-${fv}.log" 2>&1; then
    log "fetched ${coords}"
    official_jar "${fv}" "${SDK_VERSION}"
    printf '\n'
    exit 0
  fi
  log "not served: ${coords}"
done

# 2. assembled from the runner module at a neighbouring Beam version
for pair in ${FALLBACKS}; do
  fv="${pair%%:*}"
  bv="${pair##*:}"
  final="$(dirname "$(assembled_jar "${fv}" "${bv}")")"
  work="$(mktemp -d "${CACHE}/.assemble-XXXXXX")"
  cat >"${work}/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sea.infra</groupId>
  <artifactId>flink-job-server</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>beam-runners-flink-${fv}</artifactId>
      <version>${bv}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-jdk14</artifactId>
      <version>1.7.30</version>
    </dependency>
  </dependencies>
</project>
EOF
  log "assembling Flink ${fv} job server from org.apache.beam:beam-runners-flink-${fv}:${bv}"
  if ! "${MVN}" -B -q -f "${work}/pom.xml" "${DEP_PLUGIN}:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="${work}/lib" >"${work}/mvn.log" 2>&1; then
    log "not served: org.apache.beam:beam-runners-flink-${fv}:${bv} (see ${CACHE}/mvn-assemble-${fv}-${bv}.log)"
    mv -f "${work}/mvn.log" "${CACHE}/mvn-assemble-${fv}-${bv}.log"
    rm -rf "${work}"
    continue
  fi
  mkdir -p "${work}/manifest/META-INF"
  {
    printf 'Manifest-Version: 1.0\n'
    printf 'Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver\n'
    printf 'Class-Path:'
    for f in "${work}"/lib/*.jar; do printf '  lib/%s\n' "$(basename "${f}")"; done
  } >"${work}/manifest/META-INF/MANIFEST.MF"
  name="$(basename "$(assembled_jar "${fv}" "${bv}")")"
  (cd "${work}/manifest" && "${PYTHON}" -m zipfile -c "../${name}" META-INF)
  rm -rf "${work}/manifest" "${work}/pom.xml"
  if [[ -d "${final}" ]]; then
    rm -rf "${work}"  # another run finished first
  else
    mv -T "${work}" "${final}"
  fi
  assembled_jar "${fv}" "${bv}"
  printf '\n'
  exit 0
done

log "no Beam Flink job server could be fetched (SDK ${SDK_VERSION}; tried Flink ${FLINK_VERSIONS}; fallbacks ${FALLBACKS})"
exit 3
