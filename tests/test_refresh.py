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

from st_lsh import LSHSettings, mine_hard_negatives
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


def test_dataset_is_fixed_ntuple_with_the_miners_negatives(fresh_model, refresh_slice, scifact_path):
    from st_lsh.data import doc_text, load_beir

    pairs, _ = refresh_slice
    corpus = [doc_text(doc) for doc in list(load_beir(scifact_path, split="train")[0].values())[:600]]
    # A pool of 24 out of ~600 documents: the Hamming stage decides, so the two can only agree if they share the
    # centre, the codes, the pool rule and the selection.
    lsh = LSHSettings(num_bits=64, seed=7, candidate_pool=24)
    refresher = HardNegativeRefresher(fresh_model, pairs, corpus=corpus, num_negatives=2, range_max=12, lsh=lsh,
                                      batch_size=16)
    dataset = refresher.dataset
    assert len(dataset) == len(pairs)
    row = dataset[0]
    assert list(row) == ["anchor", "positive", "negative_1", "negative_2"]
    for i in range(len(dataset)):
        row = dataset[i]
        assert row["anchor"] == pairs[i]["anchor"] and row["positive"] == pairs[i]["positive"]
        assert row["positive"] not in (row["negative_1"], row["negative_2"])
    mined = mine_hard_negatives(pairs, fresh_model, corpus=corpus, output_format="n-tuple", num_negatives=2,
                                range_max=12, num_bits=64, seed=7, candidate_pool=24, verbose=False)
    expected = {(r["anchor"], r["positive"]): [r["negative_1"], r["negative_2"]] for r in mined}
    got = {(r["anchor"], r["positive"]): [r["negative_1"], r["negative_2"]] for r in dataset}
    assert len(expected) >= len(pairs) - 2 and all(got[key] == value for key, value in expected.items())
    other_seed = HardNegativeRefresher(fresh_model, pairs, corpus=corpus, num_negatives=2, range_max=12,
                                       lsh=LSHSettings(num_bits=64, seed=8, candidate_pool=24), batch_size=16).dataset
    assert [r["negative_1"] for r in other_seed] != [r["negative_1"] for r in dataset]  # the check can fail


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
                    "anchor_positive_sim", "filled", "filled_share", "queries_without_mined"):
            assert f"refresh/{key}" in entry
        assert not any(isinstance(v, float) and v != v for v in entry.values()), "a NaN statistic"
    assert len(refresher.dataset) == n_rows and list(refresher.dataset[0]) == columns
    assert not refresher.capture.attached  # the hook is removed when training ends


def test_full_refresh_reencodes_everything_and_schedule_reencodes_unseen(fresh_model, refresh_slice):
    refresher = make_refresher(fresh_model, refresh_slice, mode="full").prepare()
    stats = refresher.refresh()
    n_texts = len(refresher.pairs.corpus) + len(refresher.pairs.queries)
    assert stats.texts_encoded == n_texts
    assert stats.changed_share == 0.0  # same model, same negatives
    incremental = make_refresher(fresh_model, refresh_slice, mode="incremental", reencode_unseen_every=1).prepare()
    stats = incremental.refresh()  # nothing was seen in training: every text counts as unseen
    assert stats.texts_encoded == n_texts
    assert torch.equal(incremental.negatives, refresher.negatives)


def test_short_rows_are_filled_counted_and_reported_without_nan(fresh_model, refresh_slice, caplog, tmp_path):
    refresher = make_refresher(fresh_model, refresh_slice, mode="full", max_score=-1.0,  # no candidate passes
                               refresh_every_n_steps=1)
    with caplog.at_level(logging.INFO, logger="st_lsh.training.refresher"):
        refresher.prepare()
    n_slots = len(refresher.pairs.queries) * 2
    first = refresher.history[0]
    assert first["filled"] == n_slots and first["filled_share"] == 1.0
    assert first["queries_without_mined"] == len(refresher.pairs.queries)
    assert first["anchor_negative_sim"] is None  # nothing mined: no mean, not a NaN
    assert "sim anchor-negative - (none mined)" in caplog.text
    assert "100% of the negative slots" in caplog.text and "max_score" in caplog.text  # the warning names knobs
    for q, positives in enumerate(refresher.pairs.positive_indices):
        row = refresher.negatives[q].tolist()
        assert len(set(row)) == 2 and not set(row) & set(positives) and min(row) >= 0
    trainer = make_trainer(fresh_model, refresher, tmp_path, max_steps=2)
    trainer.train()
    entry = refresh_logs(trainer)[0]
    assert "refresh/anchor_negative_sim" not in entry and entry["refresh/filled_share"] == 1.0
    assert "max_score" in entry["refresh/warning"]
    assert not any(isinstance(v, float) and v != v for e in trainer.state.log_history for v in e.values())


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
    assert saved["hasher"]["projection_"] is not None and saved["codes"].dtype == torch.uint8

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
    refresher.table.set_negatives(torch.flip(refresher.negatives, dims=[1]), refresher.table.scores)  # not mined
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
    assert float(scheduled.table.scores.mean()) > float(easy.table.scores.mean())


def test_bad_arguments(fresh_model, refresh_slice):
    pairs, corpus = refresh_slice
    with pytest.raises(ValueError, match="mode"):
        HardNegativeRefresher(fresh_model, pairs, corpus=corpus, mode="partial")
    with pytest.raises(ValueError, match="refresh_every_n_steps"):
        HardNegativeRefresher(fresh_model, pairs, corpus=corpus, refresh_every_n_steps=0)
    with pytest.raises(ValueError, match="num_negatives"):
        HardNegativeRefresher(fresh_model, pairs, corpus=corpus, num_negatives=-1)
    with pytest.raises(RuntimeError, match="prepare"):
        HardNegativeRefresher(fresh_model, pairs, corpus=corpus).refresh()


class _RecordingLoss(MultipleNegativesRankingLoss):
    """MNRL that records the token ids of the negative column of every batch (the loss runs in the main process,
    after the dataloader workers built the batch)."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.seen: list[set[tuple[int, ...]]] = []

    def forward(self, sentence_features, labels):
        features = sentence_features[2]
        lengths = features["attention_mask"].sum(dim=1).tolist()
        self.seen.append({tuple(ids[:n].tolist()) for ids, n in zip(features["input_ids"], lengths)})
        return super().forward(sentence_features, labels)


class _AfterRefresh(TrainerCallback):
    """Snapshots the negatives at the end of each epoch, after the refresher (listed first) refreshed them."""

    def __init__(self, refresher: HardNegativeRefresher) -> None:
        self.refresher, self.snapshots = refresher, [refresher.negatives.clone()]

    def on_epoch_end(self, args, state, control, **kwargs):
        self.snapshots.append(self.refresher.negatives.clone())


@pytest.mark.parametrize("persistent", [False, True], ids=["workers", "persistent_workers"])
def test_refreshed_negatives_reach_dataloader_workers(fresh_model, refresh_slice, tmp_path, persistent):
    # Random sampling with a new seed per refresh: every refresh draws other negatives.
    refresher = make_refresher(fresh_model, refresh_slice, mode="full", num_negatives=1, range_max=16,
                               sampling_strategy="random")
    refresher.prepare()
    snapshot = _AfterRefresh(refresher)
    loss = _RecordingLoss(fresh_model)
    trainer = make_trainer(fresh_model, refresher, tmp_path, loss=loss, num_train_epochs=2,
                           dataloader_num_workers=2, dataloader_persistent_workers=persistent,
                           extra_callbacks=[snapshot])
    trainer.train()

    def token_ids(negatives: torch.Tensor) -> set[tuple[int, ...]]:
        texts = refresher.pairs.corpus.take(negatives.flatten().numpy())
        features = fresh_model.preprocess(texts)
        lengths = features["attention_mask"].sum(dim=1).tolist()
        return {tuple(ids[:n].tolist()) for ids, n in zip(features["input_ids"], lengths)}

    steps_per_epoch = len(loss.seen) // 2
    first, second = token_ids(snapshot.snapshots[0]), token_ids(snapshot.snapshots[1])
    assert first != second  # the refresh changed the negatives
    seen_first = set().union(*loss.seen[:steps_per_epoch])
    seen_second = set().union(*loss.seen[steps_per_epoch:])
    assert seen_first <= first
    assert seen_second <= second and seen_second - first, "epoch 2 trained on stale negatives"
