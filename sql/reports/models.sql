-- report: models
-- answers: How good each model was over time: rolling progressive ROC AUC and log loss, against its baseline, with the examples learned.
-- chart: line
-- param: bucket_s UInt32 = 3600
SELECT
    model,
    toStartOfInterval(ts, toIntervalSecond({bucket_s:UInt32})) AS at,
    argMax(model_version, ts) AS version,
    max(n_learned) AS learned,
    round(argMax(roc_auc, ts), 4) AS roc_auc,
    round(argMax(log_loss, ts), 4) AS log_loss,
    round(argMax(baseline_roc_auc, ts), 4) AS baseline_roc_auc
FROM {database}.model_metrics FINAL
GROUP BY model, at
ORDER BY model, at
