"""The training recipe behind st-lsh train, on real data: --max-pairs samples across queries, the derived window
holds negatives on TREC DL, the initial mining reuses the evaluation's corpus encode on BEIR and MS MARCO
layouts, and the summary reports random-filled negatives honestly."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset

from st_lsh.cli.report import train_summary
from st_lsh.recipes import TrainConfig, TrainResult, prepare_training, train
from st_lsh.rules import NegativeRules
from st_lsh.tasks import PairCounts, Task, limit_pairs, load_pairs
from st_lsh.training import HardNegativeRefresher


# ---- fixtures: small MS MARCO-layout folders cut from ../shared/data/msmarco ------------------------------


def _cut_msmarco(source: Path, folder: Path, queries: dict[str, list[str]], judged_per_query: int | None,
                 others: int) -> Path:
    """Write an MS MARCO folder: for each split, the given queries and (up to ``judged_per_query`` of, relevant
    first) their judged passages that have text, plus the first ``others`` other passages of the collection."""
    folder.mkdir(parents=True)
    collection: dict[str, str] = {}
    with (source / "collection.tsv").open(encoding="utf-8", newline="") as f:
        for line in f:
            pid, _, text = line.rstrip("\r\n").partition("\t")
            collection[pid] = text
    keep: set[str] = set()
    for split, qids in queries.items():
        rows = [line.split() for line in (source / f"qrels.{split}.tsv").read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r[0] in qids and r[2] in collection]
        rows.sort(key=lambda r: (r[0], -int(r[3])))
        kept = [r for qid in qids for r in [x for x in rows if x[0] == qid][:judged_per_query]]
        keep |= {r[2] for r in kept}
        (folder / f"qrels.{split}.tsv").write_text("".join(" ".join(r) + "\n" for r in kept))
        lines = (source / f"queries.{split}.tsv").read_text(encoding="utf-8").splitlines()
        (folder / f"queries.{split}.tsv").write_text("".join(f"{x}\n" for x in lines if x.split("\t")[0] in qids),
                                                     encoding="utf-8")
    keep |= set(list(collection)[:others])
    (folder / "collection.tsv").write_text("".join(f"{p}\t{t}\n" for p, t in collection.items() if p in keep),
                                           encoding="utf-8")
    return folder


def _queries_by_positives(source: Path, split: str, min_grade: int = 2) -> list[str]:
    rows = [line.split() for line in (source / f"qrels.{split}.tsv").read_text().splitlines() if line.strip()]
    return [q for q, _ in Counter(r[0] for r in rows if int(r[3]) >= min_grade).most_common()]


@pytest.fixture(scope="module")
def tiny_msmarco(msmarco_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 DL20 queries to train on, 4 DL19 queries to evaluate on, 8 judged passages each, 40 others."""
    dl20 = _queries_by_positives(msmarco_path, "dl20")[-4:]
    dl19 = _queries_by_positives(msmarco_path, "dl19")[-4:]
    return _cut_msmarco(msmarco_path, tmp_path_factory.mktemp("msmarco") / "tiny_msmarco",
                        {"dl20": dl20, "dl19": dl19}, judged_per_query=8, others=40)


@pytest.fixture(scope="module")
def dl20_many_positives(msmarco_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4 DL20 queries with the most passages graded >= 2, all their judged passages, and 200 others: the
    case where a fixed rank window 10-50 holds no negative."""
    return _cut_msmarco(msmarco_path, tmp_path_factory.mktemp("msmarco") / "dl20_many",
                        {"dl20": _queries_by_positives(msmarco_path, "dl20")[:4]}, judged_per_query=None, others=200)


# ---- --max-pairs samples across queries ---------------------------------------------------------------------


def test_max_pairs_samples_across_queries_under_a_seed(msmarco_path: Path, scifact_path: Path) -> None:
    dl20 = load_pairs(Task.open(msmarco_path, "dl20"), "dl20", min_relevance=2)
    total = dl20.counts
    head = dl20.pairs.select(range(200))
    assert len(set(head["anchor"])) < total.queries / 4  # the file's head: a few queries with many positives
    for data, n in ((dl20, 200), (dl20, 30), (load_pairs(scifact_path, "train"), 100)):
        sample = limit_pairs(data, n, seed=12)
        assert sample.counts.pairs == n
        assert sample.counts.queries >= min(n, data.counts.queries)
        assert sample.sampled_from == data.counts
        again = limit_pairs(data, n, seed=12)
        assert again.pairs.to_dict() == sample.pairs.to_dict()
        assert limit_pairs(data, n, seed=13).pairs.to_dict() != sample.pairs.to_dict()
    assert limit_pairs(dl20, 200, seed=12).counts.queries == total.queries  # every query, 54 of them
    capped = limit_pairs(dl20, 1000, seed=12, max_positives_per_query=2)
    assert max(Counter(capped.pairs["anchor"]).values()) == 2 and capped.counts.queries == total.queries


def test_prepare_training_samples_and_checks_without_a_model(tmp_path: Path) -> None:
    config = TrainConfig(max_pairs=100, seed=12, output=str(tmp_path / "model"))  # the bundled SciFact
    inputs = prepare_training(config)
    assert inputs.data.counts == PairCounts(100, 100)
    assert inputs.rules == NegativeRules(num_negatives=1, range_min=10, range_max=None, sampling_strategy="random")
    assert inputs.evaluator.name == "scifact_test" and len(inputs.evaluator.queries) == 300
    # the evaluator and the miner share the corpus strings the task read once
    assert inputs.evaluator.corpus == inputs.data.corpus_texts
    assert all(a is b for a, b in zip(inputs.evaluator.corpus[:50], inputs.data.corpus_texts[:50]))
    assert prepare_training(config).data.pairs.to_dict() == inputs.data.pairs.to_dict()


# ---- the derived rank window --------------------------------------------------------------------------------


@pytest.mark.slow
def test_derived_window_holds_negatives_on_trec_dl(dl20_many_positives: Path, fresh_model, tmp_path: Path) -> None:
    """st-lsh train's default rules on DL20 pairs graded >= 2 (queries with dozens of positives): the initial
    mining fills fewer than 5% of the negative slots at random, where the old defaults (ranks 10-50, relative
    margin 0.05 against the lowest positive) fill most of them."""
    config = TrainConfig(data=str(dl20_many_positives), split="dl20", min_relevance=2, skip_eval=True,
                         output=str(tmp_path / "model"))
    inputs = prepare_training(config)
    assert inputs.data.counts.queries == 4 and inputs.data.counts.pairs > 100
    shares = {}
    for label, rules in (("defaults", inputs.rules), ("fixed 10-50", NegativeRules(
            num_negatives=1, range_min=10, range_max=50, relative_margin=0.05, sampling_strategy="random"))):
        refresher = HardNegativeRefresher(fresh_model, inputs.data.pairs, corpus=inputs.data.corpus_texts,
                                          rules=rules, lsh=inputs.lsh, seed=config.seed, batch_size=64,
                                          cache_folder=str(tmp_path / "cache"))  # one encode for both
        refresher.prepare()
        shares[label] = refresher.history[0]["filled_share"]
    assert shares["defaults"] < 0.05, shares
    assert shares["fixed 10-50"] > 0.5, shares


# ---- the initial mining reuses the evaluation's corpus encode -----------------------------------------------


class EncodeSpy:
    """Counts the texts each ``encode_document`` call gets, in order."""

    def __init__(self, model) -> None:
        self.calls: list[int] = []
        original = model.encode_document

        def encode_document(texts, *args, **kwargs):
            self.calls.append(len(texts))
            return original(texts, *args, **kwargs)

        model.encode_document = encode_document


def _train_once(model, config: TrainConfig, caplog: pytest.LogCaptureFixture) -> tuple[TrainResult, EncodeSpy]:
    inputs = prepare_training(config)
    spy = EncodeSpy(model)
    with caplog.at_level(logging.INFO, logger="st_lsh.recipes"):
        result = train(model, config, inputs)
    return result, spy


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["beir", "msmarco"])
def test_initial_mining_reuses_the_evaluation_encode(layout: str, tiny_beir: Path, tiny_msmarco: Path,
                                                     fresh_model, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    data, split, eval_split = (tiny_beir, "train", "test") if layout == "beir" else (tiny_msmarco, "dl20", "dl19")
    config = TrainConfig(data=str(data), split=split, eval_split=eval_split, output=str(tmp_path / "model"),
                         max_seq_length=None, epochs=0.2, batch_size=8, refresh_every_n_steps=100, num_bits=64,
                         show_progress_bar=False)
    result, spy = _train_once(fresh_model, config, caplog)
    n_corpus = len(Task.open(data).corpus)
    # the corpus is encoded by the evaluation before training and again after it; never by the initial mining
    assert spy.calls == [n_corpus, n_corpus], spy.calls
    assert result.corpus_reused and result.corpus_size == n_corpus
    assert "reuses the corpus embeddings of the evaluation" in caplog.text
    assert result.refreshes[0]["refresh"] == 0 and result.queries_mined == result.counts.queries
    assert (tmp_path / "model" / "modules.json").is_file()


@pytest.mark.slow
def test_a_corpus_mismatch_is_logged(pair_file: Path, tiny_beir: Path, fresh_model, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """Pairs from a file, evaluated on a task: the mining corpus (the positives) is not the evaluation's, so the
    corpus is encoded again, and the log says why."""
    config = TrainConfig(data=str(pair_file), eval_data=str(tiny_beir), output=str(tmp_path / "model"),
                         max_seq_length=None, epochs=0.2, batch_size=8, refresh_every_n_steps=100, num_bits=64,
                         range_min=0, show_progress_bar=False)
    result, spy = _train_once(fresh_model, config, caplog)
    n_positives = len(set(Dataset.from_json(str(pair_file))["document"]))
    assert not result.corpus_reused
    assert spy.calls[1] == n_positives
    assert f"encodes the corpus again ({n_positives} texts): its corpus has {n_positives} unique texts" in caplog.text


# ---- honest reporting ---------------------------------------------------------------------------------------


def _result(filled_shares: list[float]) -> TrainResult:
    history = [dict(refresh=i, mode="full" if i == 0 else "incremental", total_s=0.1, texts_encoded=10,
                    texts_captured=0 if i == 0 else 40, changed_share=1.0, filled=round(share * 20),
                    filled_share=share) for i, share in enumerate(filled_shares)]
    rules = NegativeRules(num_negatives=1, range_min=10, relative_margin=0.05).resolve(max_positives=48)
    return TrainResult({"ndcg@10": 0.31}, {"ndcg@10": 0.32}, {"mining": 1.0, "train": 2.0, "total": 3.0}, history,
                       PairCounts(1000, 21), Path("out"), "dl20", rules, rules.knobs(),
                       sampled_from=PairCounts(11000, 54))


def test_summary_reports_pairs_queries_and_mined_shares() -> None:
    summary = train_summary(_result([0.0, 0.05, 0.15]))
    assert "| pairs / queries | 1,000 / 21, sampled from 11,000 / 54 |" in summary
    assert "| negatives per pair, rank window | 1, ranks 10..68 |" in summary  # 10 + 1 x 10 + 48
    assert "| negatives of the initial mining | 100.0% mined, 0.0% random-filled |" in summary
    assert "| negatives of the refreshes | 90.0% mined, 10.0% random-filled |" in summary
    assert "Warning" not in summary


def test_summary_warns_when_most_negatives_are_random() -> None:
    summary = train_summary(_result([0.45, 0.1]))
    warnings = [line for line in summary.splitlines() if line.startswith("Warning")]
    assert warnings == ["Warning: 45% of the negative slots of the initial mining hold random texts, not mined "
                        "negatives: the rules leave too few candidates. Change --range-max, --range-min, "
                        "--relative-margin."]


# ---- memory ---------------------------------------------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_gradients(fresh_model) -> None:
    """Checkpointed activations are recomputed in the backward pass (dropout RNG preserved): the same loss and
    gradients as a plain step, and the model is back to normal afterwards."""
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from st_lsh.recipes import gradient_checkpointing

    loss = MultipleNegativesRankingLoss(fresh_model)
    texts = (["What do bees make?", "Who wrote Hamlet?"], ["Bees make honey.", "Shakespeare wrote Hamlet."])
    fresh_model.train()

    def step() -> tuple[float, torch.Tensor]:
        torch.manual_seed(0)
        fresh_model.zero_grad()
        value = loss([fresh_model.preprocess(list(t)) for t in texts], None)
        value.backward()
        weight = fresh_model[0].auto_model.encoder.layer[0].attention.self.query.weight
        return float(value.detach()), weight.grad.clone()

    def checkpointing() -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in fresh_model[0].auto_model.modules())

    plain_loss, plain_grad = step()
    with gradient_checkpointing(fresh_model) as n_backbones:
        assert n_backbones == 1 and checkpointing()
        checkpointed_loss, checkpointed_grad = step()
    assert not checkpointing()
    assert checkpointed_loss == pytest.approx(plain_loss, abs=1e-6)
    assert torch.allclose(checkpointed_grad, plain_grad, atol=1e-6)


def test_train_command_returns_freed_blocks_to_the_os(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    from st_lsh.cli.train import return_freed_blocks_to_the_os

    assert return_freed_blocks_to_the_os() is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")  # the user's own setting wins
    assert return_freed_blocks_to_the_os() is False
