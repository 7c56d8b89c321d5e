"""`python -m lottery.publish FOLDER --repo-id NAME`: push a ticket's folder to the Hugging Face Hub.

FOLDER is a retrained ticket's model folder (`.../retrained/<kind>/model`): its weights, config,
tokenizer, model card (README.md) and, for a physically pruned ticket, its modeling code. The
folder is checked first (what the Hub needs to load it), then the repository is created if needed
and the folder uploaded with `huggingface_hub`. The token comes from `--token`, HF_TOKEN, or
`huggingface-cli login`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from lottery.errors import LotteryError


class PublishError(LotteryError, ValueError):
    """The folder is not a ticket the Hub could load."""


def check_folder(folder: Path) -> list[str]:
    """The files that will be uploaded; raises PublishError naming what is missing."""
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder: give a ticket's model folder (.../retrained/<ticket>/model)")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    missing = [name for name in ("config.json", "README.md") if name not in names]
    if not any(name.endswith(".safetensors") or name == "model.safetensors.index.json" for name in names):
        missing.append("model.safetensors")
    if missing:
        raise PublishError(f"{folder} lacks {missing}: publish the model folder of a finished retrained ticket")
    config = json.loads((folder / "config.json").read_text())
    if config.get("pruned_structure") is not None:
        auto_map = config.get("auto_map") or {}
        code = [value.split(".")[0] + ".py" for value in auto_map.values()]
        if not auto_map or any(name not in names for name in code):
            raise PublishError(f"{folder} is physically pruned but does not carry its modeling code (auto_map "
                               f"{auto_map}, files {names}): it could not be loaded from the Hub")
    return names


def publish(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
            api: object | None = None) -> str:
    """Upload `folder` to `repo_id`; returns the repository's URL. `api`: a `huggingface_hub.HfApi`."""
    folder = Path(folder)
    check_folder(folder)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      commit_message="Upload a lottery ticket from bert-lottery")
    return str(url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lottery.publish", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a ticket's model folder (.../retrained/<ticket>/model)")
    parser.add_argument("--repo-id", required=True, help="the Hub repository, e.g. your-name/minilm-stsb-good-ticket")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", default=None, help="a Hub token (default: HF_TOKEN or the cached login)")
    args = parser.parse_args(argv)
    try:
        url = publish(args.folder, args.repo_id, private=args.private, token=args.token)
    except LotteryError as error:
        parser.exit(2, f"error: {error}\n")
    except Exception as error:  # noqa: BLE001  (the Hub: offline, no token, no rights: say so in one line)
        parser.exit(1, f"error: could not upload to the Hugging Face Hub ({type(error).__name__}: {error})\n")
    print(f"Published {args.folder} to {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
