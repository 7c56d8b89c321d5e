"""Shared fixtures: the random tiny BERT and small batches, no downloads; and the check that the
tests marked `real_glue` have the real GLUE files."""

import pytest
import torch

from lottery.models import tiny_bert
from pipeline.config import SHARED_GLUE

torch.set_num_threads(2)


def pytest_runtest_setup(item):
    """A test marked `real_glue` fails, not skips, without the real GLUE files: a skipped test would
    look like a passed one."""
    marker = item.get_closest_marker("real_glue")
    if marker is None:
        return
    missing = [folder for folder in (marker.args or ("RTE", "SST-2")) if not (SHARED_GLUE / folder).is_dir()]
    if missing:
        pytest.fail(f"needs the real GLUE files ({', '.join(missing)}) in {SHARED_GLUE}: put the classic GLUE TSV "
                    "layout there (CoLA/, SST-2/, MRPC/, STS-B/, RTE/, ... with train.tsv and dev.tsv), or deselect "
                    "these tests with -m 'not real_glue'", pytrace=False)


@pytest.fixture
def tiny_model():
    """A random-init 2-layer, 4-head BERT classifier with 2 labels, in eval mode."""
    return tiny_bert(num_labels=2, seed=0)


@pytest.fixture
def tiny_batch():
    """A batch of 6 padded sequences of length 12 with labels, for the tiny model."""
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 2000, (6, 12), generator=g)
    attention_mask = torch.ones(6, 12, dtype=torch.long)
    attention_mask[3:, 9:] = 0
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros(6, 12, dtype=torch.long),
        "labels": torch.tensor([0, 1, 1, 0, 1, 0]),
    }


# ----- tiny GLUE-format files with the real files' quirks -----
WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "house", "big", "small", "red", "blue", "happy", "sad", "film", "good", "bad", "plot"]


def _sentence(rng, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_tiny_glue(root, n_train: int = 48, n_dev: int = 24, seed: int = 0):
    """Writes every task's train/dev TSVs (MNLI: dev_matched/dev_mismatched) into `root`.

    Quirks kept from the real files: CoLA has no header; MRPC's header starts with a BOM; some
    fields begin with a bare `"` (read with quoting off); MNLI rows carry parse-tree columns;
    STS-B scores are floats in 0-5; RTE/QNLI labels are strings.
    """
    import random
    from pathlib import Path

    rng = random.Random(seed)
    root = Path(root)

    def write(folder, name, header, rows):
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ([header] if header is not None else []) + ["\t".join(map(str, r)) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    for split, n in (("train", n_train), ("dev", n_dev)):
        name = f"{split}.tsv"
        write("CoLA", name, None, [("gj04", i % 2, "" if i % 2 else "*", _sentence(rng, 5 + i % 7)) for i in range(n)])
        write("SST-2", name, "sentence\tlabel", [(_sentence(rng, 4 + i % 9), i % 2) for i in range(n)])
        write("MRPC", name, "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
              [(i % 2, 100 + i, 200 + i, _sentence(rng, 6), '"' + _sentence(rng, 5)) for i in range(n)])
        write("STS-B", name, "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
              [(i, "main-news", "x", "2012", i, "none", "none", _sentence(rng, 6), _sentence(rng, 5),
                f"{(i * 0.37) % 5:.3f}") for i in range(n)])
        write("QQP", name, "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
              [(i, i, i + 1, _sentence(rng, 5), _sentence(rng, 5), i % 2) for i in range(n)])
        for rte_like in ("RTE", "QNLI", "WNLI"):
            labels = ("entailment", "not_entailment") if rte_like != "WNLI" else ("1", "0")
            header = "index\tquestion\tsentence\tlabel" if rte_like == "QNLI" else "index\tsentence1\tsentence2\tlabel"
            write(rte_like, name, header,
                  [(i, '"' + _sentence(rng, 7) if i == 3 else _sentence(rng, 7), _sentence(rng, 4), labels[i % 2])
                   for i in range(n)])
    mnli_header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                   "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
    nli = ("entailment", "neutral", "contradiction")
    for name, n in (("train.tsv", n_train), ("dev_matched.tsv", n_dev), ("dev_mismatched.tsv", n_dev)):
        write("MNLI", name, mnli_header,
              [(i, i, f"{i}e", "fiction", "( ( a b ) )", "( c )", "(ROOT (S))", "(ROOT (S))",
                _sentence(rng, 6), _sentence(rng, 4), nli[i % 3], nli[i % 3]) for i in range(n)])
    return root


@pytest.fixture(scope="session")
def tiny_glue(tmp_path_factory):
    """A GLUE folder in the classic layout with small, quirky files for all nine tasks."""
    return write_tiny_glue(tmp_path_factory.mktemp("glue"))
