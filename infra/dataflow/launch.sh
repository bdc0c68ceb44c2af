#!/usr/bin/env bash
# Build the sea worker / Flex Template images and run `sea pipeline embed` on Dataflow.
#
# usage: infra/dataflow/launch.sh COMMAND [cpu|gpu]
#   build-image [cpu|gpu]   docker build + push the worker image (infra/dataflow/Dockerfile)
#   run [cpu|gpu]           submit pipelines/embed_corpus.py with the DataflowRunner (full invocation)
#   build-template [cpu|gpu] build + push the launcher image and write the Flex Template spec to GCS
#   run-template [cpu|gpu]  launch a job from the Flex Template (what Cloud Scheduler calls)
#
# Required environment: PROJECT, REGION, BUCKET (no gs:// prefix), and for run/run-template
# INPUT (glob or manifest) and OUTPUT (gs:// run directory).
# Optional: TEACHER (aisfx), BATCH_SIZE (64), MAX_WORKERS (20), MACHINE_TYPE, REPO (sea),
# TAG (0.1.0), SERVICE_ACCOUNT, JOB_NAME, INCREMENTAL (true/false), EXTRA_ARGS (appended).
# DRY_RUN=1 prints each command (shell-quoted, one per line) instead of running it;
# tests/test_infra.py parses that output with Beam's PipelineOptions.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"

usage() {
  print_help
}

die() {
  echo "launch.sh: $*" >&2
  exit 2
}

require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "set ${name} (see: launch.sh --help)"
  done
}

COMMAND="${1:-}"
DEVICE="${2:-cpu}"
[[ "${COMMAND}" == "-h" || "${COMMAND}" == "--help" || -z "${COMMAND}" ]] && { usage; exit 0; }
[[ "${DEVICE}" == "cpu" || "${DEVICE}" == "gpu" ]] || die "device must be cpu or gpu, got '${DEVICE}'"

require PROJECT REGION BUCKET
REPO="${REPO:-sea}"
TAG="${TAG:-0.1.0}"
REGISTRY="${REGION}-docker.pkg.dev/${PROJECT}/${REPO}"
TEACHER="${TEACHER:-aisfx}"
BATCH_SIZE="${BATCH_SIZE:-64}"
MAX_WORKERS="${MAX_WORKERS:-20}"
INCREMENTAL="${INCREMENTAL:-true}"
JOB_NAME="${JOB_NAME:-sea-embed-$(date -u +%Y%m%d-%H%M%S)}"

# The teacher stage is the only one that needs an accelerator (docs/scaling.md):
# T4 GPUs attach to N1 machines only; one SDK process per VM so one model copy
# owns the GPU memory.
ACCELERATOR="type:nvidia-tesla-t4;count:1;install-nvidia-driver"
if [[ "${DEVICE}" == "gpu" ]]; then
  SUFFIX="-gpu"
  MACHINE_TYPE="${MACHINE_TYPE:-n1-standard-8}"
  TF_PACKAGE="tensorflow[and-cuda]"
else
  SUFFIX=""
  MACHINE_TYPE="${MACHINE_TYPE:-n2-standard-8}"
  TF_PACKAGE="tensorflow-cpu"
fi
WORKER_IMAGE="${REGISTRY}/sea-beam-worker${SUFFIX}:${TAG}"
TEMPLATE_IMAGE="${REGISTRY}/sea-embed-template${SUFFIX}:${TAG}"
TEMPLATE_SPEC="gs://${BUCKET}/templates/sea-embed-corpus${SUFFIX}-${TAG}.json"

# Beam / Dataflow options shared by `run` (flags) and `run-template` (gcloud flags).
beam_options() {
  local opts=(
    "--runner=DataflowRunner"
    "--project=${PROJECT}"
    "--region=${REGION}"
    "--job_name=${JOB_NAME}"
    "--temp_location=gs://${BUCKET}/tmp"
    "--staging_location=gs://${BUCKET}/staging"
    "--sdk_container_image=${WORKER_IMAGE}"
    "--sdk_location=container"
    "--experiments=use_runner_v2"
    "--machine_type=${MACHINE_TYPE}"
    "--num_workers=1"
    "--max_num_workers=${MAX_WORKERS}"
    "--autoscaling_algorithm=THROUGHPUT_BASED"
    "--disk_size_gb=50"
  )
  if [[ -n "${SERVICE_ACCOUNT:-}" ]]; then
    opts+=("--service_account_email=${SERVICE_ACCOUNT}")
  fi
  if [[ "${DEVICE}" == "gpu" ]]; then
    opts+=(
      "--dataflow_service_options=worker_accelerator=${ACCELERATOR}"
      "--resource_hints=accelerator=${ACCELERATOR}"
      "--resource_hints=min_ram=16GB"
      "--experiments=no_use_multiple_sdk_containers"
    )
  fi
  printf '%s\n' "${opts[@]}"
}

app_args() {
  local args=(
    "--input=${INPUT}"
    "--output=${OUTPUT}"
    "--teacher=${TEACHER}"
    "--batch_size=${BATCH_SIZE}"
  )
  if [[ "${INCREMENTAL}" == "true" ]]; then
    args+=("--incremental")
  fi
  printf '%s\n' "${args[@]}"
}

case "${COMMAND}" in
  build-image)
    run_cmd docker build -f "${ROOT}/infra/dataflow/Dockerfile" \
      --build-arg "TF_PACKAGE=${TF_PACKAGE}" -t "${WORKER_IMAGE}" "${ROOT}"
    run_cmd docker push "${WORKER_IMAGE}"
    ;;
  run)
    require INPUT OUTPUT
    mapfile -t APP < <(app_args)
    mapfile -t BEAM < <(beam_options)
    # shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags on purpose
    run_cmd python -m pipelines.embed_corpus "${APP[@]}" "${BEAM[@]}" ${EXTRA_ARGS:-}
    ;;
  build-template)
    LAUNCHER_REPO="gcr.io/dataflow-templates-base/python311-template-launcher-base"
    if [[ "${DRY_RUN:-0}" == "1" ]]; then
      LAUNCHER_DIGEST="sha256:DIGEST"
    else
      # Pin the launcher base to the digest of its current release, recorded in the build log.
      LAUNCHER_DIGEST="$(gcloud artifacts docker images describe "${LAUNCHER_REPO}:latest" \
        --format='value(image_summary.digest)')"
    fi
    echo "launcher base: ${LAUNCHER_REPO}@${LAUNCHER_DIGEST}" >&2
    run_cmd docker build -f "${ROOT}/infra/dataflow/flex_template/Dockerfile" \
      --build-arg "WORKER_IMAGE=${WORKER_IMAGE}" \
      --build-arg "LAUNCHER_BASE=${LAUNCHER_REPO}@${LAUNCHER_DIGEST}" \
      -t "${TEMPLATE_IMAGE}" "${ROOT}"
    run_cmd docker push "${TEMPLATE_IMAGE}"
    run_cmd gcloud dataflow flex-template build "${TEMPLATE_SPEC}" \
      --image "${TEMPLATE_IMAGE}" --sdk-language PYTHON \
      --metadata-file "${ROOT}/infra/dataflow/flex_template/metadata.json" \
      --project "${PROJECT}"
    ;;
  run-template)
    require INPUT OUTPUT
    # The template image is also the SDK image (same code on launcher and workers).
    WORKER_IMAGE="${TEMPLATE_IMAGE}"
    PARAMS="input=${INPUT},output=${OUTPUT},teacher=${TEACHER},batch_size=${BATCH_SIZE},incremental=${INCREMENTAL}"
    GCLOUD=(gcloud dataflow flex-template run "${JOB_NAME}"
      --template-file-gcs-location "${TEMPLATE_SPEC}"
      --project "${PROJECT}" --region "${REGION}"
      --parameters "${PARAMS}"
      --parameters "sdk_container_image=${WORKER_IMAGE}"
      --temp-location "gs://${BUCKET}/tmp" --staging-location "gs://${BUCKET}/staging"
      --worker-machine-type "${MACHINE_TYPE}" --num-workers 1 --max-workers "${MAX_WORKERS}"
      --additional-experiments use_runner_v2)
    if [[ -n "${SERVICE_ACCOUNT:-}" ]]; then
      GCLOUD+=(--service-account-email "${SERVICE_ACCOUNT}")
    fi
    if [[ "${DEVICE}" == "gpu" ]]; then
      GCLOUD+=(--additional-experiments no_use_multiple_sdk_containers
        --additional-user-labels accelerator=nvidia-tesla-t4
        --parameters "dataflow_service_options=worker_accelerator=${ACCELERATOR}"
        --parameters "resource_hints=accelerator=${ACCELERATOR}")
    fi
    run_cmd "${GCLOUD[@]}"
    ;;
  *)
    die "unknown command '${COMMAND}' (build-image | run | build-template | run-template)"
    ;;
esac
