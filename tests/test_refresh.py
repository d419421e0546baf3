"""HardNegativeRefresher: fixed dataset shape, the miner's rules, losses, filling, failure, checkpoints, curriculum.

Tiny slices (16 SciFact pairs, 48 documents, max_seq_length 32, a few steps) keep the whole file short on CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    GISTEmbedLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import (
    BatchSamplers,
    SentenceTransformerTrainingArguments,
)
from transformers import TrainerCallback

from st_lsh import mine_hard_negatives
from st_lsh.training import HardNegativeRefresher, HardnessSchedule
from st_lsh.training import refresher as refresher_module
from st_lsh.training.refresher import STATE_FILE

RULES = {"num_negatives": 2, "range_max": 12, "num_bits": 256, "seed": 7, "batch_size": 16}


def make_refresher(model, refresh_slice, **kwargs) -> HardNegativeRefresher:
    pairs, corpus = refresh_slice
    return HardNegativeRefresher(model, pairs, corpus=corpus, **{**RULES, **kwargs})


def make_trainer(model, refresher, tmp_path: Path, loss=None, extra_callbacks=(), **kwargs):
    settings = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, learning_rate=5e-5, seed=3,
        batch_sampler=BatchSamplers.NO_DUPLICATES, report_to=[], disable_tqdm=True, save_strategy="no",
        logging_steps=100,
    )
    args = SentenceTransformerTrainingArguments(**{**settings, **kwargs})
    return SentenceTransformerTrainer(
        model=model, args=args, train_dataset=refresher.dataset,
        loss=loss if loss is not None else MultipleNegativesRankingLoss(model),
        callbacks=[refresher, *extra_callbacks],
    )


def refresh_logs(trainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if any(k.startswith("refresh/") for k in entry)]


def test_dataset_is_fixed_ntuple_with_the_miners_negatives(fresh_model, refresh_slice):
    pairs, corpus = refresh_slice
    refresher = make_refresher(fresh_model, refresh_slice)
    dataset = refresher.dataset
    assert len(dataset) == len(pairs)
    row = dataset[0]
    assert list(row) == ["anchor", "positive", "negative_1", "negative_2"]
    for i in range(len(dataset)):
        row = dataset[i]
        assert row["anchor"] == pairs[i]["anchor"] and row["positive"] == pairs[i]["positive"]
        assert row["positive"] not in (row["negative_1"], row["negative_2"])
    # The refresher's first mining is st_lsh.mine_hard_negatives with the same rules: same negatives.
    mined = mine_hard_negatives(pairs, fresh_model, corpus=corpus, output_format="n-tuple", num_negatives=2,
                                range_max=12, num_bits=256, seed=7, verbose=False)
    expected = {(r["anchor"], r["positive"]): [r["negative_1"], r["negative_2"]] for r in mined}
    got = {(r["anchor"], r["positive"]): [r["negative_1"], r["negative_2"]] for r in dataset}
    assert expected and all(got[key] == value for key, value in expected.items())


@pytest.mark.parametrize("loss_name", ["mnrl", "cached_mnrl", "gist"])
def test_incremental_refresh_during_training(fresh_model, refresh_slice, tmp_path, loss_name):
    if loss_name == "mnrl":
        loss = MultipleNegativesRankingLoss(fresh_model)
    elif loss_name == "cached_mnrl":
        loss = CachedMultipleNegativesRankingLoss(fresh_model, mini_batch_size=4)
    else:
        loss = GISTEmbedLoss(fresh_model, guide=fresh_model)
    # GISTEmbedLoss takes (anchor, positive[, negative]) only: one negative column for it.
    extra = {"num_negatives": 1} if loss_name == "gist" else {}
    refresher = make_refresher(fresh_model, refresh_slice, mode="incremental", refresh_every_n_steps=1, **extra)
    n_rows, columns = len(refresher.dataset), list(refresher.dataset[0])
    trainer = make_trainer(fresh_model, refresher, tmp_path, loss=loss, max_steps=3)
    trainer.train()
    logs = refresh_logs(trainer)
    assert [entry["step"] for entry in logs] == [1, 2]  # no refresh after the last step
    for entry in logs:
        assert entry["refresh/mode"] == "incremental"
        assert entry["refresh/texts_encoded"] == 0
        assert entry["refresh/texts_captured"] > 0  # reused from the training forward passes
        for key in ("encode_s", "hash_s", "search_s", "changed_share", "anchor_negative_sim",
                    "anchor_positive_sim", "filled"):
            assert f"refresh/{key}" in entry
    assert len(refresher.dataset) == n_rows and list(refresher.dataset[0]) == columns
    assert not refresher.capture.attached  # the hook is removed when training ends


def test_full_refresh_reencodes_everything_and_schedule_reencodes_unseen(fresh_model, refresh_slice):
    refresher = make_refresher(fresh_model, refresh_slice, mode="full").prepare()
    stats = refresher.refresh()
    assert stats.texts_encoded == len(refresher.corpus) + len(refresher.queries)
    assert stats.changed_share == 0.0  # same model, same negatives
    incremental = make_refresher(fresh_model, refresh_slice, mode="incremental", reencode_unseen_every=1).prepare()
    stats = incremental.refresh()  # nothing was seen in training: every text counts as unseen
    assert stats.texts_encoded == len(incremental.corpus) + len(incremental.queries)
    assert torch.equal(incremental.negatives, refresher.negatives)


def test_short_rows_are_filled_and_counted(fresh_model, refresh_slice, caplog):
    refresher = make_refresher(fresh_model, refresh_slice, mode="full", max_score=-1.0)  # no candidate passes
    with caplog.at_level(logging.INFO, logger="st_lsh.training.refresher"):
        refresher.prepare()
    n_slots = len(refresher.queries) * 2
    assert refresher.history[0]["filled"] == n_slots
    assert "Filled %d negative slots" % n_slots in caplog.text
    for q, positives in enumerate(refresher.positive_indices):
        row = refresher.negatives[q].tolist()
        assert len(set(row)) == 2 and not set(row) & set(positives) and min(row) >= 0


def test_failed_refresh_keeps_negatives_and_training_goes_on(fresh_model, refresh_slice, tmp_path, monkeypatch,
                                                             caplog):
    refresher = make_refresher(fresh_model, refresh_slice, mode="full", refresh_every_n_steps=1)
    refresher.prepare()
    before = refresher.negatives.clone()

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(refresher_module, "encode_texts", out_of_memory)
    trainer = make_trainer(fresh_model, refresher, tmp_path, max_steps=2)
    with caplog.at_level(logging.WARNING, logger="st_lsh.training.refresher"):
        trainer.train()
    assert trainer.state.global_step == 2
    assert torch.equal(refresher.negatives, before)
    assert "refresh failed (OutOfMemoryError: CUDA out of memory (simulated))" in caplog.text
    assert refresh_logs(trainer)[0]["refresh/failed"] == 1


class _Snapshot(TrainerCallback):
    """Records the refresher's negatives when training (re)starts; listed after the refresher."""

    def __init__(self, refresher: HardNegativeRefresher) -> None:
        self.refresher = refresher
        self.negatives: torch.Tensor | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.negatives = self.refresher.negatives.clone()


def test_checkpoint_saves_state_and_resume_continues_with_the_same_negatives(fresh_model, refresh_slice,
                                                                             tmp_path):
    refresher = make_refresher(fresh_model, refresh_slice, mode="incremental", refresh_every_n_steps=1,
                               sampling_strategy="random", range_max=16)
    trainer = make_trainer(fresh_model, refresher, tmp_path, max_steps=3, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    saved = torch.load(checkpoint / STATE_FILE, weights_only=True)
    assert saved["refresh_count"] == 3  # initial mining + refreshes after steps 1 and 2
    assert saved["hasher"]["projection_"] is not None and saved["corpus_codes"].dtype == torch.uint8

    from sentence_transformers import SentenceTransformer

    resumed_model = SentenceTransformer(str(checkpoint), device="cpu")
    resumed = make_refresher(resumed_model, refresh_slice, mode="incremental", refresh_every_n_steps=1,
                             sampling_strategy="random", range_max=16)
    snapshot = _Snapshot(resumed)
    resumed.load(checkpoint)  # before .dataset: no initial mining
    trainer = make_trainer(resumed_model, resumed, tmp_path, max_steps=3, save_strategy="steps", save_steps=2,
                           extra_callbacks=[snapshot])
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert torch.equal(snapshot.negatives, saved["negatives"])
    assert resumed.refresh_count == 3 and trainer.state.global_step == 3


def test_resume_without_explicit_load_reads_the_checkpoint(fresh_model, refresh_slice, tmp_path):
    refresher = make_refresher(fresh_model, refresh_slice, mode="full").prepare()
    refresher.negatives = torch.flip(refresher.negatives, dims=[1])  # a state the mining would not give
    from transformers import TrainerState

    state = TrainerState(global_step=5, max_steps=10)
    refresher.save(tmp_path / "checkpoint-5")
    other = make_refresher(fresh_model, refresh_slice, mode="full").prepare()
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), report_to=[])
    other.on_train_begin(args, state, None)
    assert torch.equal(other.negatives, refresher.negatives)


def test_hardness_schedule_moves_the_window_from_easy_to_hard(fresh_model, refresh_slice):
    schedule = HardnessSchedule(range_min=(4, 0), relative_margin=(0.2, 0.0))
    assert schedule.at(0.0) == {"range_min": 4, "relative_margin": 0.2}
    assert schedule.at(0.5) == {"range_min": 2, "relative_margin": 0.1}
    assert schedule.at(2.0) == schedule.at(1.0) == {"range_min": 0, "relative_margin": 0.0}
    with pytest.raises(ValueError):
        HardnessSchedule()

    scheduled = make_refresher(fresh_model, refresh_slice, mode="full",
                               hardness_schedule=HardnessSchedule(range_min=(4, 0))).prepare()
    easy = make_refresher(fresh_model, refresh_slice, mode="full", range_min=4, range_max=16).prepare()
    hard = make_refresher(fresh_model, refresh_slice, mode="full").prepare()
    assert torch.equal(scheduled.negatives, easy.negatives)  # start: skip the 4 nearest, window kept 12 wide
    assert not torch.equal(easy.negatives, hard.negatives)
    scheduled.refresh(progress=1.0)
    assert torch.equal(scheduled.negatives, hard.negatives)  # end: the hardest
    assert float(scheduled.negative_scores.mean()) > float(easy.negative_scores.mean())


def test_bad_arguments(fresh_model, refresh_slice):
    pairs, corpus = refresh_slice
    with pytest.raises(ValueError, match="mode"):
        HardNegativeRefresher(fresh_model, pairs, corpus=corpus, mode="partial")
    with pytest.raises(ValueError, match="refresh_every_n_steps"):
        HardNegativeRefresher(fresh_model, pairs, corpus=corpus, refresh_every_n_steps=0)
    with pytest.raises(ValueError, match="num_negatives"):
        HardNegativeRefresher(fresh_model, pairs, corpus=corpus, num_negatives=0)
    with pytest.raises(RuntimeError, match="prepare"):
        HardNegativeRefresher(fresh_model, pairs, corpus=corpus).refresh()
