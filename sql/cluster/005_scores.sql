-- scores and model_metrics, cluster variant of sql/005_scores.sql (see there for the columns).
-- scores: sharded by profile_id, like the other tables of a profile. It is not in the ORDER BY
-- (model, entity_id, ts), but a replayed score is the same computation on the same profile's
-- state and carries the same profile_id, so it lands on the shard that has the first one and
-- FINAL (per shard) collapses it.
CREATE TABLE IF NOT EXISTS {database}.scores_local ON CLUSTER '{cluster}'
(
    model         LowCardinality(String),
    entity_id     String,
    profile_id    String,
    score         Float64,
    model_version UInt32,
    ts            DateTime64(3, 'UTC'),
    explanation   Map(String, Float64),
    received_at   DateTime64(3, 'UTC'),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/scores', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (model, entity_id, ts);

CREATE TABLE IF NOT EXISTS {database}.scores ON CLUSTER '{cluster}' AS {database}.scores_local
ENGINE = Distributed('{cluster}', {database}, scores_local, cityHash64(profile_id));

-- model_metrics: no profile; sharded by model, the first column of the ORDER BY (model, ts): one
-- model's history is on one shard. A small table (one row per model per metrics interval).
CREATE TABLE IF NOT EXISTS {database}.model_metrics_local ON CLUSTER '{cluster}'
(
    model             LowCardinality(String),
    ts                DateTime64(3, 'UTC'),
    stream_ts         DateTime64(3, 'UTC'),
    model_version     UInt32,
    n_learned         UInt64,
    n_pending         UInt64,
    n_dropped         UInt64,
    roc_auc           Float64,
    log_loss          Float64,
    baseline_roc_auc  Float64,
    baseline_log_loss Float64,
    positive_rate     Float64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/model_metrics', '{replica}')
ORDER BY (model, ts);

CREATE TABLE IF NOT EXISTS {database}.model_metrics ON CLUSTER '{cluster}' AS {database}.model_metrics_local
ENGINE = Distributed('{cluster}', {database}, model_metrics_local, cityHash64(model));
