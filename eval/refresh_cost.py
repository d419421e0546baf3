"""Cost and effect of refreshing hard negatives during training, on SciFact train -> test.

Three arms, same seed, data and steps: (a) negatives mined once (the refresher's
initial mining, same rows and steps as the other arms) and kept, (b) a full
refresh after each epoch but the last, (c) an incremental refresh after each epoch but the last. Per refresh: wall
time split into encode / hash / search, and its share of the epoch's training time. After training: test nDCG@10.
The table is rewritten after every arm, so a cut-off run still leaves what finished.

Usage::

    python eval/refresh_cost.py                       # all three arms
    python eval/refresh_cost.py --arms incremental full
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, RESULTS, SHARED_DATA, markdown_table, write_report  # noqa: E402
from train_scifact import train_and_evaluate  # noqa: E402

logger = logging.getLogger(__name__)


def report(results: dict[str, dict], max_seq_length: int, commands: list[str]) -> None:
    rows = []
    for arm, r in results.items():
        epoch = sum(r["epoch_s"]) / max(len(r["epoch_s"]), 1)
        if not r["refreshes"]:
            rows.append([arm, "-", "-", "-", "-", "-", "-", "-", "-", f"{epoch:.0f}", r["steps"], r.get("ndcg@10", "n/a")])
        for f in r["refreshes"]:
            rows.append([
                arm, f["refresh"], f"{f['total_s']:.1f}", f"{f['encode_s']:.1f}", f"{f['hash_s']:.2f}",
                f"{f['search_s']:.2f}", f"{100 * f['total_s'] / epoch:.1f}%", f["texts_encoded"],
                f"{100 * f['changed_share']:.1f}%", f"{epoch:.0f}", r["steps"], r.get("ndcg@10", "n/a"),
            ])
    body = [
        f"SciFact train (all pairs) mined against the full corpus; batch 32, lr 2e-5, NO_DUPLICATES, seed 12, "
        f"2 epochs, MultipleNegativesRankingLoss on (anchor, positive, negative) triplets, range_max 20, "
        f"relative_margin 0.05, 512 bits; max_seq_length={max_seq_length} (training, mining and evaluation) to "
        "fit the CPU budget. Epoch time = training wall time of the epoch, refresh excluded (mean over epochs). "
        "Base all-MiniLM-L6-v2 scores nDCG@10 0.6451 on SciFact test (max_seq_length 256).",
        "",
        markdown_table(
            ["arm", "refresh #", "refresh s", "encode s", "hash s", "search s", "share of epoch",
             "texts encoded", "negatives changed", "epoch s", "steps", "test nDCG@10"],
            rows,
        ),
        "",
        "Commands that produced these arms: " + "; ".join(f"`{c}`" for c in commands) + ".",
        "",
        "Refresh statistics (anchor-negative / anchor-positive mean cosine, filled slots):",
        "",
    ]
    for arm, r in results.items():
        for f in r["refreshes"]:
            body.append(f"- {arm} refresh {f['refresh']}: anchor-negative {f['anchor_negative_sim']:.3f}, "
                        f"anchor-positive {f['anchor_positive_sim']:.3f}, filled {f['filled']}, "
                        f"captured {f['texts_captured']}")
    write_report("refresh_cost", "Hard-negative refresh during training: cost and effect", "\n".join(body), results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", default=["none", "incremental", "full"])
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    partial = RESULTS / "refresh_cost.partial.json"
    saved: dict[str, Any] = json.loads(partial.read_text()) if partial.exists() else {}
    commands: list[str] = saved.pop("__commands__", [])
    commands.append("python " + " ".join(shlex.quote(a) for a in ["eval/refresh_cost.py", *sys.argv[1:]]))
    results: dict[str, dict] = saved
    for arm in args.arms:
        logger.info("=== arm %s ===", arm)
        results[arm] = train_and_evaluate(
            SHARED_DATA / "scifact", refresh=arm, epochs=args.epochs, max_seq_length=args.max_seq_length,
            output_dir=f"/tmp/refresh_cost_{arm}", cache_folder=str(CACHE / "refresh_cost"),
        )
        logger.info("arm %s: %s", arm, json.dumps(results[arm], default=float))
        RESULTS.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({**results, "__commands__": commands}, indent=1, default=float))
        report(results, args.max_seq_length, commands)


if __name__ == "__main__":
    main()
