"""Models: LightGBM vs XGBoost quality on the Handbook protocol, and inference speed.

Run: ``python benchmarks/bench_models.py [--json] [--customers N] [--train-days D]``.

1. Simulates the Handbook's default history (``--customers`` scales it), backfills the
   features once, and trains both libraries on the same protocol (training ending
   2018-07-31, 7-day delay, test week 2018-08-08..14; early stopping on the same holdout
   days). Prints AUC ROC, Average Precision and Card Precision@100 on the cleaned test week,
   and the training time. (XGBoost is a benchmark-only dependency.)
2. Inference on one thread for batches of 500 rows: the LightGBM booster alone (log-odds),
   the full bundle (booster + isolation forest + stacker: what ``ModelBundle.score`` does),
   the booster with path contributions (the default of ``explain``) and with exact TreeSHAP
   (``pred_contrib``), reason codes (path contributions + text), and
   XGBoost with and without contributions. Rows/s = 500 / median batch time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
import xgboost as xgb

from fraudstream.models import Protocol, TrainOptions, build_dataset, fit, labels_for, split
from fraudstream.models.metrics import average_precision, card_precision_at_k, roc_auc
from fraudstream.simulate import SimulationConfig, simulate

BATCH = 500


def per_second(fn: Callable[[], object], rows: int, repeat: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return rows / statistics.median(times)


def quality(test: pl.DataFrame, score: np.ndarray) -> dict[str, float]:
    y = test["y"].to_numpy()
    return {
        "auc_roc": roc_auc(y, score),
        "average_precision": average_precision(y, score),
        "card_precision_at_100": card_precision_at_k(
            test["day"].to_numpy(), test["customer_id"].to_numpy(), score, y
        ),
    }


def train_xgboost(ds: Any, protocol: Protocol, options: TrainOptions) -> tuple[xgb.Booster, float]:
    rows = split(ds, protocol).train
    cut = protocol.train_end - timedelta(days=options.holdout)
    learn, hold = rows.filter(pl.col("day") <= cut), rows.filter(pl.col("day") > cut)
    t0 = time.perf_counter()
    dl = xgb.DMatrix(ds.matrix(learn), label=learn["y"].to_numpy().astype(int))
    dh = xgb.DMatrix(ds.matrix(hold), label=hold["y"].to_numpy().astype(int))
    params = {
        "objective": "binary:logistic",
        "eta": options.learning_rate,
        "max_depth": 6,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "tree_method": "hist",
        "eval_metric": "aucpr",
        "seed": options.seed,
    }
    booster = xgb.train(
        params,
        dl,
        options.max_rounds,
        evals=[(dh, "holdout")],
        early_stopping_rounds=options.early_stopping_rounds,
        verbose_eval=False,
    )
    return booster, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--train-days", type=int, default=TrainOptions().train_days)
    args = parser.parse_args()

    config = SimulationConfig(n_customers=args.customers, n_terminals=2 * args.customers)
    result = simulate(config)
    history = result.transactions
    options = TrainOptions(train_days=args.train_days)
    protocol = Protocol.ending(date(2018, 7, 31), train_days=args.train_days)
    t0 = time.perf_counter()
    ds = build_dataset(
        history,
        labels_for(history, result.labels),
        first_day=protocol.train_start,
        last_day=protocol.test_end,
    )
    backfill_s = time.perf_counter() - t0
    test = split(ds, protocol).test
    X_test = ds.matrix(test)

    t0 = time.perf_counter()
    model = fit(ds, protocol, options)
    lgb_s = time.perf_counter() - t0
    bundle = model.bundle
    xgb_model, xgb_s = train_xgboost(ds, protocol, options)
    out: dict[str, Any] = {
        "protocol": protocol.to_dict(),
        "backfill_s": backfill_s,
        "lightgbm": {
            **quality(test, bundle.raw(X_test)),
            "train_s": lgb_s,
            "trees": bundle.booster.num_trees(),
        },
        "lightgbm_stacked": quality(test, bundle.probability(X_test)),
        "xgboost": {
            **quality(
                test,
                xgb_model.predict(
                    xgb.DMatrix(X_test), iteration_range=(0, xgb_model.best_iteration + 1)
                ),
            ),
            "train_s": xgb_s,
            "trees": xgb_model.best_iteration + 1,
        },
    }

    X = np.ascontiguousarray(X_test[:BATCH])
    xgb_model.set_param({"nthread": 1})
    no_anomaly = replace(bundle, anomaly=None)
    xgb_range = (0, xgb_model.best_iteration + 1)
    speed = {
        "lightgbm_rows_per_s": per_second(lambda: bundle.raw(X), BATCH),
        "lightgbm_no_anomaly_score_rows_per_s": per_second(lambda: no_anomaly.score(X), BATCH),
        "bundle_score_rows_per_s": per_second(lambda: bundle.score(X), BATCH),
        "path_contrib_rows_per_s": per_second(lambda: bundle.contributions(X), BATCH),
        "treeshap_contrib_rows_per_s": per_second(
            lambda: bundle.contributions(X, exact=True), BATCH, repeat=3
        ),
        "reason_codes_rows_per_s": per_second(lambda: bundle.explain(X), BATCH),
        "isolation_forest_rows_per_s": per_second(
            lambda: bundle.anomaly.score(X) if bundle.anomaly else None, BATCH
        ),
        "xgboost_rows_per_s": per_second(
            lambda: xgb_model.inplace_predict(X, iteration_range=xgb_range), BATCH
        ),
        "xgboost_contrib_rows_per_s": per_second(
            lambda: xgb_model.predict(
                xgb.DMatrix(X), pred_contribs=True, iteration_range=xgb_range
            ),
            BATCH,
        ),
    }
    out["inference_batch_500_one_thread"] = speed
    if args.json:
        print(json.dumps(out))
        return
    print(f"protocol {protocol.to_dict()}  backfill {backfill_s:.1f} s")
    print(f"{'model':<18}{'AUC':>8}{'AP':>8}{'CP@100':>8}{'train s':>9}{'trees':>7}")
    for name in ("lightgbm", "lightgbm_stacked", "xgboost"):
        q = out[name]
        print(
            f"{name:<18}{q['auc_roc']:>8.3f}{q['average_precision']:>8.3f}"
            f"{q['card_precision_at_100']:>8.3f}{q.get('train_s', float('nan')):>9.1f}"
            f"{q.get('trees', 0):>7}"
        )
    print("inference, batches of 500 on one thread:")
    for key, value in speed.items():
        print(f"  {key:<40}{value:>12,.0f}")


if __name__ == "__main__":
    main()
