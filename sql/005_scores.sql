-- Served model scores: one row per score of a profile (churn) or opportunity (win).
-- `explanation` holds the top contributions (linear models: weight x scaled value, in
-- logit units; others: occlusion, in probability units), largest first.
-- Latest churn risk per profile:
--   SELECT profile_id, argMax(score, ts) FROM scrm.scores WHERE model = 'churn' GROUP BY profile_id
CREATE TABLE IF NOT EXISTS {database}.scores
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, entity_id, ts);

-- Model quality over time, from progressive validation (every prediction is made before
-- its label is known). roc_auc / log_loss are rolling over the last metrics_window labels;
-- baseline_* are the same for the model's declared baseline (nan when none).
CREATE TABLE IF NOT EXISTS {database}.model_metrics
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
ENGINE = ReplacingMergeTree
ORDER BY (model, ts);
