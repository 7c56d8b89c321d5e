"""Custom tasks (task=custom): files and datasets read, labels numbered, errors named, and a
structured experiment end to end on a CSV task with string labels."""

import csv
import json
import random

import pytest
import torch

from lottery.baselines import majority_baseline
from lottery.custom_tasks import CustomTaskError, custom_task, default_task_name
from lottery.glue_data import read_split, source_fingerprint
from lottery.tasks import CLASSIFICATION_METRICS, REGRESSION_METRICS, get_task, task_from_settings
from tests.conftest import WORDS

SENTIMENTS = ("pos", "neg", "neutral")


def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def review_rows(n, seed=0):
    rng = random.Random(seed)
    return [(i, " ".join(rng.choice(WORDS) for _ in range(4 + i % 6)) + (', "quoted", with a comma' if i == 2 else ""),
             SENTIMENTS[i % 3]) for i in range(n)]


@pytest.fixture
def reviews(tmp_path):
    """A CSV task with string labels: reviews_train.csv (48 rows) and reviews_dev.csv (24 rows)."""
    header = ["id", "review", "sentiment"]
    return (write_csv(tmp_path / "reviews_train.csv", header, review_rows(48)),
            write_csv(tmp_path / "reviews_dev.csv", header, review_rows(24, seed=1)))


def settings(files, **extra):
    """conf/task/custom.yaml's settings for `files` (train, dev), or for a dataset (files None)."""
    train, dev = (None, None) if files is None else (str(files[0]), str(files[1]))
    return {"name": None, "train": train, "dev": dev, "text": ["review"], "label": "sentiment",
            "num_labels": 3, "metric": "accuracy", "hf_dataset": None, **extra}


def test_string_labels_are_numbered_in_sorted_order(reviews):
    task = task_from_settings(settings(reviews))
    assert task.name == "reviews" and task.labels == ("neg", "neutral", "pos") and task.num_labels == 3
    assert task.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    train = read_split(task, "train", None)
    assert len(train) == 48 and train.labels[:3] == [2, 0, 1]  # pos, neg, neutral
    assert train.texts[2][0].endswith('"quoted", with a comma')  # standard CSV quoting
    assert task.definition["labels"] == ["neg", "neutral", "pos"] and not task.definition["integer_labels"]


def test_integer_labels_are_class_ids_and_a_pair_of_texts(tmp_path):
    header = ["premise", "hypothesis", "label"]
    rows = [(f"premise {i}", f"hypothesis {i}", str(i % 3)) for i in range(9)]
    train = write_csv(tmp_path / "nli.train.tsv", header, rows, delimiter="\t")
    dev = write_csv(tmp_path / "nli.dev.tsv", header, rows[:4], delimiter="\t")
    task = custom_task(settings((train, dev), text=["premise", "hypothesis"], label="label", metric="matthews_corrcoef"))
    assert task.name == "nli" and task.labels == ("0", "1", "2") and task.metrics == ("mcc",)
    examples = read_split(task, "dev", None)
    assert examples.labels == [0, 1, 2, 0] and examples.texts[1] == ("premise 1", "hypothesis 1")


def test_jsonl_regression_with_pearson_spearman(tmp_path):
    for split, n in (("train", 6), ("dev", 3)):
        lines = [json.dumps({"text": f"sentence {i}", "score": i * 0.5}) for i in range(n)]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    task = custom_task(settings((tmp_path / "train.jsonl", tmp_path / "dev.jsonl"), text="text", label="score",
                                num_labels=1, metric="pearson_spearman"))
    assert task.is_regression and task.name == tmp_path.name.strip("._")  # train.jsonl: named by its folder
    assert task.metrics == ("pearson", "spearman") and task.pruning_metric == "pearson_spearman"
    assert read_split(task, "dev", None).labels == [0.0, 0.5, 1.0]


def test_default_names_are_folder_safe():
    assert default_task_name("/data/My Reviews-train.csv", None) == "My_Reviews"
    assert default_task_name(None, "org/imdb", "plain text") == "imdb_plain_text"
    assert default_task_name(None, None) is None


def test_glue_tasks_still_come_by_name():
    assert task_from_settings({"name": "rte"}) is get_task("rte")


@pytest.mark.parametrize("change, message", [
    ({"train": "/nonexistent/train.csv"}, r"task.train=/nonexistent/train.csv: no such file"),
    ({"label": "stars"}, r"has no column 'stars' .*its columns are: id, review, sentiment"),
    ({"text": ["review", "title"]}, r"has no column 'title'"),
    ({"metric": "bleu"}, r"task.metric='bleu' is not a known metric; known: accuracy, f1, f1_macro, mcc, pearson"),
    ({"metric": "pearson"}, r"does not score a 3-class task; use one of accuracy, f1, f1_macro, mcc"),
    ({"metric": "f1"}, r"binary F1 of label 1; a 3-class task needs f1_macro"),
    ({"num_labels": 2}, r"holds 3 distinct labels \['neg', 'neutral', 'pos'\] but task.num_labels=2"),
    ({"num_labels": None}, r"task.num_labels must be 1 \(a regression\) or the number of classes"),
    ({"num_labels": 1, "metric": "pearson"}, r"label 'pos' is not a number \(task.num_labels=1 is a regression\)"),
    ({"text": []}, r"task.text must name one or two text columns"),
    ({"name": "my task"}, r"task.name must be a folder-safe name"),
    ({"name": "RTE"}, r"is a GLUE task's name"),
    ({"train": None}, r"task=custom needs task.train and task.dev"),
])
def test_errors_name_what_to_change(reviews, change, message):
    with pytest.raises(CustomTaskError, match=message) as error:
        task = task_from_settings(settings(reviews, **change))
        read_split(task, "train", None)  # a regression's labels are parsed when read
    assert "\n" not in str(error.value)


def test_an_unknown_file_format_and_a_bad_integer_label(tmp_path, reviews):
    other = tmp_path / "train.txt"
    other.write_text("review,sentiment\n")
    with pytest.raises(CustomTaskError, match=r"unknown format '.txt'; use a .csv, .tsv or .jsonl file"):
        custom_task(settings((other, reviews[1])))
    header = ["review", "label"]
    train = write_csv(tmp_path / "ids_train.csv", header, [("a", "0"), ("b", "3")])
    dev = write_csv(tmp_path / "ids_dev.csv", header, [("a", "1")])
    task = custom_task(settings((train, dev), label="label", num_labels=2))
    with pytest.raises(CustomTaskError, match=r"ids_train.csv:3: label 3 is not a class id 0..1"):
        read_split(task, "train", None)


def test_the_fingerprint_and_the_run_folders_follow_the_files_content(reviews, tmp_path):
    from pipeline.run import make_run
    from tests.helpers import compose_config, tiny_overrides

    overrides = tiny_overrides(tmp_path / "out", tmp_path, "task=custom", f"task.train={reviews[0]}",
                               f"task.dev={reviews[1]}", "task.text=[review]", "task.label=sentiment", "task.num_labels=3")
    folder = make_run(compose_config(overrides)).finetune_dir
    task = custom_task(settings(reviews))
    before = source_fingerprint(task, "train", None)
    with open(reviews[0], "a", newline="") as handle:
        csv.writer(handle).writerow([99, "one more review", "pos"])
    assert source_fingerprint(task, "train", None) != before
    assert make_run(compose_config(overrides)).finetune_dir.name != folder.name
    assert len(read_split(task, "train", None)) == 49
    other_columns = custom_task(settings(reviews, text=["id"]))
    assert source_fingerprint(other_columns, "dev", None) != source_fingerprint(task, "dev", None)


def test_a_saved_dataset_with_class_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    splits = {name: datasets.Dataset.from_dict({"sentence": [f"{name} {i}" for i in range(n)],
                                                "label": [i % 2 for i in range(n)]}, features=features)
              for name, n in (("train", 6), ("validation", 4))}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "sst"))
    task = custom_task(settings(None, hf_dataset=str(tmp_path / "sst"), text=["sentence"],
                                label="label", num_labels=2))
    assert task.name == "sst" and task.labels == ("negative", "positive")
    assert read_split(task, "dev", None).labels == [0, 1, 0, 1] and task.fingerprint("train").startswith("disk:")
    with pytest.raises(CustomTaskError, match=r"has no split 'test' \(task.dev_split\); its splits: train, validation"):
        custom_task(settings(None, hf_dataset=str(tmp_path / "sst"), text=["sentence"],
                             label="label", num_labels=2, dev_split="test"))


def test_a_hub_dataset_goes_through_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({"q": ["a", "b", "c"], "answer": ["yes", "no", "yes"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = custom_task(settings(None, hf_dataset="org/boolq", hf_config="v2", text=["q"],
                                label="answer", num_labels=2))
    assert task.name == "boolq_v2" and task.labels == ("no", "yes")
    assert read_split(task, "train", None).labels == [1, 0, 1]
    assert ("org/boolq", "v2", "train") in calls and ("org/boolq", "v2", "validation") in calls
    assert task.fingerprint("dev").startswith("hub:org/boolq/v2 [validation]")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(CustomTaskError, match=r"could not load org/other \[train\] from the Hugging Face hub "
                                              r"\(ConnectionError: Couldn't reach the hub\); without the hub"):
        custom_task(settings(None, hf_dataset="org/other", text=["q"], label="answer",
                             num_labels=2))


def test_every_metric_name_has_a_torchmetric_and_macro_f1_baseline_matches_it(reviews):
    from torchmetrics.classification import MulticlassF1Score

    from lightning_modules.metrics import metric_collection

    task = custom_task(settings(reviews, metric=list(CLASSIFICATION_METRICS[:1] + CLASSIFICATION_METRICS[2:])))
    assert set(metric_collection(task, "dev").keys()) == {"accuracy", "f1_macro", "mcc"}
    regression = custom_task(settings(reviews, text=["review"], label="id", num_labels=1, metric=list(REGRESSION_METRICS)))
    assert set(metric_collection(regression, "dev").keys()) == {"pearson", "spearman"}
    train, dev = [0, 0, 1, 2], [1, 1, 2, 0, 1]
    constant = MulticlassF1Score(num_classes=3, average="macro")(torch.zeros(5, dtype=torch.long), torch.tensor(dev))
    assert majority_baseline(task, train, {"dev": dev})["f1_macro"] == pytest.approx(float(constant))


def test_a_custom_csv_task_runs_the_structured_experiment(tmp_path, reviews, tiny_glue):
    from pipeline import train
    from tests.helpers import compose_config, experiment_dir, tiny_overrides

    overrides = tiny_overrides(tmp_path / "out", tiny_glue, "experiment=structured", "task=custom",
                               f"task.train={reviews[0]}", f"task.dev={reviews[1]}", "task.text=[review]",
                               "task.label=sentiment", "task.num_labels=3", "task.metric=[f1_macro,accuracy]",
                               "structured.head_fraction=0.25", "tickets.cost=false")
    results = train(compose_config(overrides))
    assert results["task"] == "reviews" and results["label_names"] == ["neg", "neutral", "pos"]
    assert results["metric"] == "f1_macro" and set(results["full"]) == {"f1_macro", "accuracy"}
    assert set(results["tickets"]) == {"good", "random", "bad"}
    exp = experiment_dir(tmp_path / "out", "reviews", "structured-paper")
    assert json.loads((exp / "settings.json").read_text())["task_definition"]["labels"] == ["neg", "neutral", "pos"]
    config = json.loads((exp / "retrained" / "good" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "neutral", "2": "pos"} and config["label2id"]["pos"] == 2
