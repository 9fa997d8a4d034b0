"""Pushing a saved grown model or LiGO adapter directory, with its card, to the Hugging Face Hub.

The directory was written by the libraries' own ``save_pretrained`` (``fedgrow merge`` /
``PeftModel.save_pretrained``), so it is uploaded as it is with ``HfApi.upload_folder`` -- one commit,
the same files ``push_to_hub`` would send -- instead of loading the model only to save it again
(an adapter would even need its sources to load). In memory, ``model.push_to_hub(repo_id)`` and
``PeftModel.push_to_hub(repo_id)`` are the standard ways, followed by ``card.push_to_hub(repo_id)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, constants


class HubPushError(ConnectionError):
    """The push did not happen: offline mode, no network, or the Hub refused it (token, permissions)."""


def first_line(error: BaseException) -> str:
    """An exception's message reduced to one line, for errors that name a cause inside a sentence."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def push_directory(
    directory: str | os.PathLike,
    repo_id: str,
    card: ModelCard,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Write ``card`` as the directory's README.md, then upload the directory to ``repo_id``.

    Returns the commit URL. Raises :class:`HubPushError` (one line) when the push fails; in offline
    mode before anything is written.
    """
    if constants.HF_HUB_OFFLINE:
        raise HubPushError(
            f"HF_HUB_OFFLINE is set: cannot push {directory} to the Hub repository {repo_id!r}"
        )
    card.save(Path(directory) / constants.REPOCARD_NAME)
    api = HfApi(token=token, library_name="fedgrow-hf")
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(directory),
            repo_id=repo_id,
            commit_message=commit_message
            or f"Upload grown model from {Path(directory).name} with fedgrow-hf",
        )
    except Exception as error:  # network, authentication or Hub-side failure: all end the push here
        raise HubPushError(
            f"cannot push to {repo_id!r} on the Hub at {constants.ENDPOINT} ({first_line(error)})"
        ) from error
    return commit.commit_url
