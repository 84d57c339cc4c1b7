"""Where trained models are kept between chapters: chapter 6's CLIP is loaded by
chapters 7 and 8, the oracle by every chapter. A cached file is named by what made
it (a hash of the settings), so another recipe never loads a stale model."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def cache_folder() -> Path:
    """Where minigen keeps trained models: $MINIGEN_CACHE, else ~/.cache/minigen."""
    folder = os.environ.get("MINIGEN_CACHE")
    if folder is None:
        return Path.home() / ".cache" / "minigen"
    if not folder.strip():
        raise ValueError(
            "MINIGEN_CACHE is set but empty; set it to a folder for minigen's "
            "trained models, or unset it to use ~/.cache/minigen"
        )
    return Path(folder)


def cache_path(stem: str, settings: object) -> Path:
    """cache_folder() / "<stem>-<12 hex digits of sha256(repr(settings))>.pt"."""
    key = hashlib.sha256(repr(settings).encode()).hexdigest()[:12]
    return cache_folder() / f"{stem}-{key}.pt"


def check_writable(folder: Path, what: str) -> None:
    """Fail now, not after minutes of training, if no file can be written in
    `folder`; `what` names the model in the message."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        message = (
            f"cannot write {what} into this folder ({error.strerror}); "
            "set MINIGEN_CACHE to a writable folder, or pass another path"
        )
        raise type(error)(error.errno, message, str(folder)) from error


def check_settings(path: Path, saved: str, settings: object, what: str) -> None:
    """A cached file at `path` that recorded `saved` = repr(its settings) must have
    been made with `settings` (two settings may share a hash prefix, or the file
    may have been passed by hand); `what` names the model in the message."""
    if saved != repr(settings):
        raise ValueError(
            f"{path} holds {what} made with other settings; delete it or pass "
            "another path"
        )
