"""Models named by a Hugging Face hub id: one line at once when the hub cannot give them.

Without the hub, transformers retries each file for about half a minute, twice over (tokenizer,
then model), and ends in an OSError deep in a long traceback. `fetching(name)` asks the hub once,
without retries, before anything is loaded (a model already in the local cache needs no hub), and
turns what the loaders still raise into a `HubUnavailableError` that says how to use a local copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from lottery.errors import HubUnavailableError, LotteryError

PROBE_FILE = "config.json"  # every model repository has one
PROBE_TIMEOUT_S = 10


def is_local(name_or_path: str | Path) -> bool:
    return Path(str(name_or_path)).expanduser().is_dir()


def unavailable(name: str, why: str) -> HubUnavailableError:
    local = name.rstrip("/").rsplit("/", 1)[-1]
    return HubUnavailableError(
        f"cannot fetch {name!r} from the Hugging Face hub ({why}) and it is not in the local cache: download it "
        f"where the hub is reachable (huggingface-cli download {name} --local-dir /path/to/{local}) and set "
        f"model.name_or_path=/path/to/{local}")


def check_fetchable(name_or_path: str | Path) -> None:
    """Return if `name_or_path` is a local folder, is in the local hub cache, or the hub answers
    for it; else raise HubUnavailableError at once (offline, no network, no such repository)."""
    if is_local(name_or_path):
        return
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    name = str(name_or_path)
    if isinstance(try_to_load_from_cache(name, PROBE_FILE), str):
        return
    if constants.is_offline_mode():
        raise unavailable(name, "offline mode is on: HF_HUB_OFFLINE is set")
    try:
        get_hf_file_metadata(hf_hub_url(name, PROBE_FILE), timeout=PROBE_TIMEOUT_S)  # no retries
    except Exception as error:  # noqa: BLE001  (network, DNS, 401/404, gated: all mean "cannot fetch it")
        first_line = (str(error).splitlines() or [""])[0]
        raise unavailable(name, f"{type(error).__name__}: {first_line}") from None


@contextlib.contextmanager
def fetching(name_or_path: str | Path) -> Iterator[None]:
    """Around a `from_pretrained(name_or_path)`: `check_fetchable` first, and an OSError of the
    hub's (a file that could not be downloaded) as a HubUnavailableError."""
    check_fetchable(name_or_path)
    try:
        yield
    except OSError as error:
        if is_local(name_or_path) or isinstance(error, LotteryError):
            raise
        first_line = (str(error).splitlines() or [""])[0]
        raise unavailable(str(name_or_path), f"{type(error).__name__}: {first_line}") from error
