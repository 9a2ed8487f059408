#!/bin/bash
# Runs once, when the influxdb container sets up an empty data volume (after `influx setup`
# has created the org, the bucket and the admin token from DOCKER_INFLUXDB_INIT_*).
#
# Maps an InfluxDB 1.x database name (plus retention policy) to the driftline bucket, so
# InfluxQL (Grafana's dashboards, `/query?db=...`) reads what the workers write with the
# v2 API. The entrypoint exports the ids of the org and bucket it created and points the
# influx CLI at its temporary init server.
set -euo pipefail

database="${INFLUXDB_V1_DATABASE:-driftline}"
retention_policy="${INFLUXDB_V1_RETENTION_POLICY:-autogen}"

echo "driftline: mapping InfluxQL database ${database}/${retention_policy}" \
    "to bucket ${DOCKER_INFLUXDB_INIT_BUCKET} (${DOCKER_INFLUXDB_INIT_BUCKET_ID})"
influx v1 dbrp create \
    --token "${DOCKER_INFLUXDB_INIT_ADMIN_TOKEN}" \
    --org-id "${DOCKER_INFLUXDB_INIT_ORG_ID}" \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
    --db "${database}" \
    --rp "${retention_policy}" \
    --default
influx v1 dbrp list --token "${DOCKER_INFLUXDB_INIT_ADMIN_TOKEN}" \
    --org-id "${DOCKER_INFLUXDB_INIT_ORG_ID}" --db "${database}"
