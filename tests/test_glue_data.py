"""GLUE readers on files with the real files' quirks, the task registry, tokenised caching and samplers."""

import pytest
import torch

from lottery.features import PadCollator, holdout_indices, load_tokenized
from lottery.glue_data import GlueDataError, read_split
from lottery.models import minilm_path
from lottery.samplers import EpochBatchSampler, ShardedSequentialBatchSampler
from lottery.tasks import TASKS, UnknownTaskError, get_task


def test_registry_has_all_nine_tasks_with_the_papers_metrics():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert get_task("CoLA").pruning_metric == "mcc"
    assert get_task("STS-B").pruning_metric == "pearson_spearman" and get_task("stsb").is_regression
    assert get_task("mrpc").metrics == ("accuracy", "f1") and get_task("mrpc").pruning_metric == "accuracy"
    assert get_task("mnli").eval_splits == ("dev", "dev_mm") and get_task("mnli").num_labels == 3


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(UnknownTaskError, match="valid tasks: cola, sst2, mrpc"):
        get_task("squad")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_reads_train_and_dev(tiny_glue, name):
    task = get_task(name)
    for split in ("train", *task.eval_splits):
        examples = read_split(task, split, tiny_glue)
        assert len(examples) == (48 if split == "train" else 24)
        assert all(len(texts) == len(task.tsv.text_columns) for texts in examples.texts)
        if task.is_regression:
            assert all(isinstance(y, float) and 0 <= y <= 5 for y in examples.labels)
        else:
            assert set(examples.labels) <= set(range(task.num_labels))


def test_cola_has_no_header_and_mrpc_bom_is_stripped(tiny_glue):
    cola = read_split(get_task("cola"), "train", tiny_glue)
    assert len(cola) == 48 and cola.labels[:2] == [0, 1]  # the first line is data, not a header
    mrpc = read_split(get_task("mrpc"), "dev", tiny_glue)
    assert mrpc.labels[:2] == [0, 1]


def test_fields_starting_with_a_bare_quote_do_not_swallow_rows(tiny_glue):
    rte = read_split(get_task("rte"), "train", tiny_glue)
    assert rte.texts[3][0].startswith('"') and len(rte) == 48
    assert rte.labels[:2] == [0, 1]  # entailment -> 0 as in the hub's label ids


def test_mnli_labels_and_both_dev_splits(tiny_glue):
    task = get_task("mnli")
    assert read_split(task, "dev", tiny_glue).labels[:3] == [0, 1, 2]
    assert len(read_split(task, "dev_mm", tiny_glue)) == 24


def test_missing_file_names_the_path_and_both_ways_to_provide_glue(tmp_path):
    with pytest.raises(GlueDataError) as error:
        read_split(get_task("rte"), "train", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "RTE" / "train.tsv") in message and "GLUE_DIR" in message and "hub" in message


def test_malformed_row_names_file_and_line(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    with pytest.raises(GlueDataError, match=r"RTE/dev.tsv:3: malformed row .* expected 4 .* found 2"):
        read_split(get_task("rte"), "dev", tmp_path)


def test_unknown_label_names_file_and_line(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(GlueDataError, match=r"dev.tsv:2: label 'maybe' is not one of"):
        read_split(get_task("rte"), "dev", tmp_path)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def test_tokenized_split_is_cached_and_reused(tiny_glue, tokenizer, tmp_path):
    task = get_task("mrpc")
    first = load_tokenized(task, "dev", tokenizer, 32, tiny_glue, tmp_path)
    cached = list(tmp_path.rglob("*.pt"))
    assert len(cached) == 1
    again = load_tokenized(task, "dev", tokenizer, 32, tiny_glue, tmp_path)
    assert again.input_ids == first.input_ids and again.labels == first.labels
    assert max(first.lengths) <= 32 and first.token_type_ids[0][-1] == 1  # sentence pair


def test_dynamic_padding_pads_to_the_longest_in_batch(tokenizer):
    collate = PadCollator(tokenizer.pad_token_id, regression=False)
    batch = collate([{"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0], "labels": 1},
                     {"input_ids": [101, 102], "token_type_ids": [0, 0], "labels": 0}])
    assert batch["input_ids"].shape == (2, 3) and batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert PadCollator(0, regression=True, pad_to=8)([{"input_ids": [1], "token_type_ids": [0], "labels": 2.5}])[
        "input_ids"].shape == (1, 8)


def test_length_grouped_sampler_is_seeded_complete_and_groups_lengths():
    lengths = [(i * 37) % 100 + 1 for i in range(1000)]
    sampler = EpochBatchSampler(lengths, 32, seed=3, group_batches=10)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == list(EpochBatchSampler(lengths, 32, seed=3, group_batches=10))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    random_padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b)
                         for b in (list(range(k, min(k + 32, 1000))) for k in range(0, 1000, 32)))
    assert padding < random_padding / 3


def test_ddp_shards_cover_every_batch_once():
    whole = list(ShardedSequentialBatchSampler(10, 3))
    shards = [list(ShardedSequentialBatchSampler(10, 3, rank=r, world_size=2)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(whole) and len(shards[0]) == 2 and len(shards[1]) == 2
    train = [list(EpochBatchSampler(list(range(100)), 8, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(train[0]) == len(train[1])  # equal steps on every rank, or DDP would hang


def test_holdout_is_seeded_and_sized():
    assert holdout_indices(100, 10, seed=1) == holdout_indices(100, 10, seed=1)
    assert holdout_indices(100, 10, seed=1) != holdout_indices(100, 10, seed=2)
    with pytest.raises(ValueError, match="larger training set"):
        holdout_indices(10, 10, seed=0)


def test_labels_are_float_for_regression_and_long_otherwise():
    assert PadCollator(0, True)([{"input_ids": [1], "token_type_ids": [0], "labels": 1.5}])["labels"].dtype == torch.float


def test_equal_steps_pads_ranks_with_empty_batches():
    shards = [list(ShardedSequentialBatchSampler(10, 3, rank=r, world_size=3, equal_steps=True)) for r in range(3)]
    assert [len(s) for s in shards] == [2, 2, 2]
    assert shards[1][1] == [] and shards[2][1] == []
    assert sorted(i for s in shards for b in s for i in b) == list(range(10))
    assert PadCollator(0, False)([])["input_ids"].shape == (0, 0)


def test_a_nan_label_is_a_data_error_naming_file_and_line(tmp_path):
    from lottery.glue_data import read_tsv

    path = tmp_path / "dev.tsv"
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    path.write_text(header + "\n" + "0\tg\tf\t2012\t0\ts\ts\ta cat\ta dog\t3.2\n" + "1\tg\tf\t2012\t1\ts\ts\tx\ty\tnan\n")
    with pytest.raises(GlueDataError, match=rf"{path}:3: label 'nan' is not a finite number"):
        read_tsv(path, get_task("stsb"))


def test_train_subset_is_seeded_and_keeps_the_drawn_order():
    from lottery.features import subset_indices

    first = subset_indices(100, 10, seed=1)
    assert first == subset_indices(100, 10, seed=1) and first != subset_indices(100, 10, seed=2)
    assert first == torch.randperm(100, generator=torch.Generator().manual_seed(1))[:10].tolist()
    assert first != sorted(first)  # the authors iterate random_split's subset in its drawn order
