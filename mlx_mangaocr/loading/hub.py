"""Fetching a checkpoint's files from the Hugging Face hub, or from its cache when the hub cannot be
reached: one quick probe decides, so an offline user gets one message in seconds instead of
huggingface_hub's five retries (24 s) per file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..core.errors import ModelLoadError

PROBE_TIMEOUT_S = 5.0


def hub_reachable(repo_id: str, filename: str) -> bool:
    """Whether the hub answers a single HEAD request for ``filename`` (no retries, a short timeout).
    An HTTP error (404, 401, ...) counts as reachable: the hub answered, and the download reports it.
    False at once when ``HF_HUB_OFFLINE`` is set."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename), timeout=PROBE_TIMEOUT_S)
    except HfHubHTTPError:
        return True
    except Exception:  # connection refused, DNS failure, timeout, proxy or TLS error: no hub
        return False
    return True


def download(repo_id: str, required: Sequence[str], optional: Sequence[str] = (), weights: Sequence[str] = ()) -> Path:
    """Fetch ``required`` and ``optional`` files and the first of ``weights`` the repo has; return
    the snapshot folder. Offline (``HF_HUB_OFFLINE``, or the hub unreachable), only the cache is
    read, and a file missing there raises ``ModelLoadError`` with what to do."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    online = hub_reachable(repo_id, required[0])
    if online:
        why = "the download failed and it is not in the Hugging Face cache"
    elif constants.HF_HUB_OFFLINE:
        why = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
    else:
        why = f"offline (the hub at {constants.ENDPOINT} cannot be reached) and not in the Hugging Face cache"
    hint = f"Connect once, or convert on a connected machine (mlx-mangaocr-convert {repo_id} -o FOLDER) and load that"

    def fetch(filename: str, needed: bool) -> Path | None:
        # Order matters: LocalEntryNotFoundError (not cached) is an EntryNotFoundError.
        try:
            return Path(hf_hub_download(repo_id, filename, local_files_only=not online))
        except RepositoryNotFoundError:
            raise ModelLoadError(f"no model repo {repo_id!r} on the Hugging Face hub (or it is private)") from None
        except LocalEntryNotFoundError:
            if needed:
                raise ModelLoadError(f"cannot get {filename} of {repo_id!r}: {why}. {hint}") from None
            return None
        except EntryNotFoundError:
            if needed:
                raise ModelLoadError(f"the hub repo {repo_id!r} has no {filename}") from None
            return None
        except (HfHubHTTPError, OSError) as e:
            raise ModelLoadError(f"downloading {filename} of {repo_id!r} failed: {e}") from None

    folder = fetch(required[0], needed=True).parent
    for name in required[1:]:
        fetch(name, needed=True)
    for name in optional:
        fetch(name, needed=False)
    if not weights:
        return folder
    for name in weights:
        if fetch(name, needed=False) is not None:
            return folder
    raise ModelLoadError(
        f"could not get {' or '.join(weights)} of {repo_id!r} "
        f"(the repo has none of them{'' if online else ', and they are not cached: ' + why})"
    )
