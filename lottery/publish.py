"""`python -m lottery.publish FOLDER --repo-id NAME [--dry-run]`: push a ticket to the Hugging Face Hub.

FOLDER is a retrained ticket's model folder (`.../retrained/<kind>/model`). Only the ticket is
sent, by an allow-list: its config, weights (`*.safetensors` and their index), tokenizer files,
the modeling code its `auto_map` names (with the files that code imports), the model card
(README.md) and a generation config if any. Everything else in the folder (hidden files such as
`.env`, credentials, checkpoints, pickled `*.bin`/`*.ckpt` files, logs, subfolders, links) is
listed as left out and never uploaded; `--dry-run` lists both and uploads nothing. The folder is
checked first (what the Hub needs to load it), then the repository is created if needed and the
allowed files uploaded with `huggingface_hub`. The token comes from `--token`, HF_TOKEN, or
`huggingface-cli login`.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lottery.errors import LotteryError

# What a ticket is, besides its weights (`*.safetensors`) and its modeling code (from `auto_map`).
TICKET_FILES = frozenset({
    "config.json", "generation_config.json", "README.md", "model.safetensors.index.json",
    # tokenizers (WordPiece, BPE, SentencePiece, fast)
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "spm.model",
    "chat_template.jinja", "chat_template.json",
})
RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\s", re.MULTILINE)


class PublishError(LotteryError, ValueError):
    """The folder is not a ticket the Hub could load."""


@dataclass(frozen=True)
class Selection:
    """The files of a folder (paths relative to it) that are uploaded, and those left out."""

    upload: list[str]
    left_out: list[str]


def modeling_code(folder: Path, config: dict) -> set[str]:
    """The Python files `auto_map` names, with the files they import relatively (recursively)."""
    modules = set()
    for value in (config.get("auto_map") or {}).values():
        for reference in value if isinstance(value, list) else [value]:
            if reference:
                modules.add(reference.split("--")[-1].rsplit(".", 1)[0] + ".py")
    pending, found = sorted(modules), set()
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        path = folder / name
        if path.is_file() and not path.is_symlink():
            pending += [f"{module}.py" for module in RELATIVE_IMPORT.findall(path.read_text(errors="replace"))]
    return found


def _read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise PublishError(f"{folder / 'config.json'} cannot be read ({error}): publish the model folder of a "
                           "finished retrained ticket") from None
    return config if isinstance(config, dict) else {}


def select_files(folder: str | Path) -> Selection:
    """Split the folder's files into the ticket (the allow-list) and everything else."""
    folder = Path(folder)
    config = _read_config(folder) if (folder / "config.json").is_file() else {}
    code = modeling_code(folder, config)
    upload, left_out = [], []
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        name = path.relative_to(folder).as_posix()
        allowed = ("/" not in name and not name.startswith(".") and path.is_file() and not path.is_symlink()
                   and (name in TICKET_FILES or name in code or name.endswith(".safetensors")))
        (upload if allowed else left_out).append(name)
    return Selection(upload, left_out)


def check_folder(folder: Path) -> list[str]:
    """The files that will be uploaded; raises PublishError naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder: give a ticket's model folder (.../retrained/<ticket>/model)")
    names = select_files(folder).upload
    missing = [name for name in ("config.json", "README.md") if name not in names]
    if not any(name.endswith(".safetensors") or name == "model.safetensors.index.json" for name in names):
        missing.append("model.safetensors")
    if missing:
        raise PublishError(f"{folder} lacks {missing}: publish the model folder of a finished retrained ticket")
    config = _read_config(folder)
    if config.get("pruned_structure") is not None:
        auto_map = config.get("auto_map") or {}
        code = sorted(modeling_code(folder, config))
        if not auto_map or any(name not in names for name in code):
            raise PublishError(f"{folder} is physically pruned but does not carry its modeling code (auto_map "
                               f"{auto_map}, files {names}): it could not be loaded from the Hub")
    return names


def publish(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
            api: object | None = None) -> str:
    """Upload the ticket in `folder` (only the allowed files: `select_files`) to `repo_id`; returns
    the repository's URL. `api`: a `huggingface_hub.HfApi`."""
    folder = Path(folder)
    names = check_folder(folder)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      allow_patterns=[glob.escape(name) for name in names],
                      commit_message="Upload a lottery ticket from bert-lottery")
    return str(url)


def _listing(title: str, names: list[str]) -> str:
    return "\n".join([title, *(f"  {name}" for name in names)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lottery.publish", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a ticket's model folder (.../retrained/<ticket>/model)")
    parser.add_argument("--repo-id", required=True, help="the Hub repository, e.g. your-name/minilm-stsb-good-ticket")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", default=None, help="a Hub token (default: HF_TOKEN or the cached login)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded and what is left out; "
                                                                "upload nothing")
    args = parser.parse_args(argv)
    try:
        names = check_folder(args.folder)
        left_out = select_files(args.folder).left_out
        if args.dry_run:
            print(_listing(f"Would upload {len(names)} files of {args.folder} to {args.repo_id} (dry run: nothing "
                           "uploaded):", names))
            print(_listing(f"Left out {len(left_out)} (not part of the ticket):", left_out))
            return 0
        url = publish(args.folder, args.repo_id, private=args.private, token=args.token)
    except LotteryError as error:
        parser.exit(2, f"error: {error}\n")
    except Exception as error:  # noqa: BLE001  (the Hub: offline, no token, no rights: say so in one line)
        parser.exit(1, f"error: could not upload to the Hugging Face Hub ({type(error).__name__}: {error})\n")
    print(_listing(f"Published {len(names)} files of {args.folder} to {url}:", names))
    if left_out:
        print(_listing(f"Left out {len(left_out)} (not part of the ticket):", left_out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
