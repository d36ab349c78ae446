"""Model folders on disk: where the shipped ones live, their manifests and integrity checks.

Every model folder (a classifier or an encoder) carries a JSON manifest that lists its files with
their sha256 sums. Loading verifies them before anything is unpickled or handed to ONNX Runtime, so
a truncated download or a hand-edited file fails with an error that names the file instead of a
confusing traceback deep inside joblib or onnxruntime.

The manifests are integrity checks, not a security boundary: joblib files are pickles, so only load
model folders you trust.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import uuid
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping

PathLike = str | os.PathLike


class ModelFileError(ValueError):
    """A model file is missing, corrupt, or written by an incompatible version."""


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_models_root() -> Path:
    """The folder holding the models shipped with the package.

    In an installed wheel the repository's ``models/`` folder is the package
    ``refusal_predictor.models``; in a source checkout it is ``<repo>/models``. The checkout's own
    folder comes first: with the package installed editable from one checkout, code run from a
    second checkout resolves ``refusal_predictor.models`` through the install to the *first*
    checkout's models, so its training scripts read, and overwrote, another checkout's models.
    """
    checkout = source_checkout_models()
    if checkout is not None:
        return checkout
    try:
        root = Path(str(resources.files("refusal_predictor.models")))
        if root.is_dir():
            return root
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "models"


def source_checkout_models(package_dir: Path | None = None) -> Path | None:
    """``<repo>/models`` when this package is imported from a source checkout of refusal-predictor
    (its ``setup.cfg`` names the project and maps ``models/`` into the package), else ``None``.
    A wheel's site-packages has no such ``setup.cfg`` beside the package."""
    repo = (package_dir or Path(__file__).resolve().parent).parent
    models, setup_cfg = repo / "models", repo / "setup.cfg"
    if not (models / "__init__.py").is_file() or not setup_cfg.is_file():
        return None
    try:
        text = setup_cfg.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return models if "name = refusal-predictor" in text and "refusal_predictor.models = models" in text else None


def shipped_path(*parts: str) -> Path:
    return shipped_models_root().joinpath(*parts)


def shipped_name_key(name: str) -> str:
    """A shipped model's name (a response variant, a prompt target) as users type it: case,
    surrounding spaces and a trailing slash (``ngrams/``, as shell completion writes a folder
    name) do not matter."""
    return name.strip().rstrip("/\\").lower()


def read_manifest(
    folder: PathLike, filename: str, expected_format: str, supported_versions: tuple[int, ...]
) -> dict[str, Any]:
    """Read and check a folder's manifest; errors name the manifest file."""
    path = Path(folder) / filename
    if not Path(folder).is_dir():
        raise ModelFileError(f"{folder}: no such model folder")
    if not path.is_file():
        raise ModelFileError(f"{path}: manifest missing; is this a {expected_format} folder?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != expected_format:
        raise ModelFileError(f"{path}: not a {expected_format} manifest")
    version = manifest.get("format_version")
    if version not in supported_versions:
        raise ModelFileError(
            f"{path}: format_version {version!r} is not supported by this version of "
            f"refusal-predictor (supports {list(supported_versions)}); upgrade the package"
        )
    return manifest


def files_field_problem(files: Any, required: tuple[str, ...]) -> str | None:
    """What is wrong with a manifest's ``files`` map (file name -> sha256), or ``None``.

    Names must be plain file names: ``verify_files`` must not be pointed outside the folder.
    """
    if not isinstance(files, dict) or not set(required) <= files.keys():
        return f"'files' must map {' and '.join(required)} to their sha256"
    if any(not isinstance(name, str) or Path(name).name != name or not isinstance(sha, str) for name, sha in files.items()):
        return "'files' must map plain file names to sha256 strings"
    return None


def verify_files(folder: PathLike, files: Mapping[str, str]) -> None:
    """Check every listed file exists and has the recorded sha256."""
    for name, expected in files.items():
        path = Path(folder) / name
        if not path.is_file():
            raise ModelFileError(f"{path}: file listed in the manifest is missing")
        actual = sha256_file(path)
        if actual != expected.lower():  # hex either case: PowerShell's Get-FileHash prints upper case
            raise ModelFileError(
                f"{path}: sha256 mismatch (expected {expected[:12]}..., got {actual[:12]}...); "
                "the file is corrupt or was modified"
            )


def write_json(path: PathLike, payload: Mapping[str, Any]) -> None:
    """Strict JSON: a NaN or infinite number (an AUROC of one class) is written as ``null``, which
    every parser reads; ``NaN`` is Python's extension, refused by JavaScript's ``JSON.parse``."""
    Path(path).write_text(json.dumps(strict_json(payload), indent=2, sort_keys=False, allow_nan=False) + "\n",
                          encoding="utf-8")


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float, however deep, as ``None`` (JSON's ``null``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def _same_folder(a: Path, b: Path) -> bool:
    """One folder by identity, not spelling: on a case-insensitive file system (macOS, Windows)
    ``MODELS/prompt`` is ``models/prompt``, and ``resolve()`` keeps the spelling given."""
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_shipped_folder(path: PathLike, what: str = "model") -> None:
    """A user's command writes no model into the package's shipped models.

    ``train-prompt -o models/prompt/gpt-4`` (natural in a source checkout) replaced the shipped
    GPT-4 target, so ``PromptClassifier.load(target="gpt-4")`` then loaded the user's model; in
    an installed wheel it would change site-packages behind pip's back. Shipped models are
    rebuilt by the ``training/`` pipelines, which save through ``save()`` without this check.
    """
    folder, root = Path(path).resolve(), shipped_models_root().resolve()
    if any(p == root or _same_folder(p, root) for p in (folder, *folder.parents)):
        raise ValueError(f"{path}: inside the shipped models ({root}); a {what} is not saved there, "
                         "where it would replace what load() ships: choose a folder outside it")


def short_name(name: str, limit: int = 64) -> str:
    """``name`` cut to at most ``limit`` bytes, at a character boundary (a name of 62 emoji is
    248 bytes, and 64 of its characters made a temporary name too long)."""
    encoded = os.fsencode(name)
    if len(encoded) <= limit:
        return name
    return encoded[:limit].decode("utf-8", "ignore") if _utf8_names() else name[:limit // 4]


def _utf8_names() -> bool:
    return sys.getfilesystemencoding().lower().replace("-", "") == "utf8"


@contextmanager
def staged_folder(folder: PathLike) -> Iterator[Path]:
    """Build a folder's new contents beside it, then swap them in whole.

    Writing a model straight into its folder over an earlier model left, on a full disk or a
    crash part-way, a folder whose manifest no longer matched its files: neither model loaded.
    The caller writes into the yielded sibling folder; when the block ends without error it
    replaces ``folder`` by two renames (the old folder is removed after), and on any error it is
    deleted and ``folder`` is left as it was. A ``folder`` that is a symbolic link has its target
    replaced, not the link.
    """
    folder = Path(os.path.realpath(folder)) if Path(folder).is_symlink() else Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{short_name(folder.name)}.saving-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        for written in staging.rglob("*"):  # on the disk before the rename, as outputs are
            if written.is_file() and not written.is_symlink():
                fsync_file(written)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        if not folder.exists():
            os.rename(staging, folder)
            return
        old = folder.parent / f".{short_name(folder.name)}.replaced-{uuid.uuid4().hex[:8]}"
        staged = staging.stat()
        os.rename(folder, old)
        try:
            os.rename(staging, folder)
        except BaseException:
            if same_inode(folder, staged):  # renamed just before an exception (a signal): it stands, whole
                shutil.rmtree(old, ignore_errors=True)
            else:  # not renamed: the earlier folder goes back
                os.rename(old, folder)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def same_inode(path: Path, known: os.stat_result | None) -> bool:
    """Whether ``path`` is now the file or folder ``known`` was stat'ed from: how a step that an
    exception may have cut between a rename and the note of it tells whether the rename happened."""
    if known is None:
        return False
    try:
        now = path.stat()
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (known.st_dev, known.st_ino)


def fsync_file(path: PathLike) -> None:
    """Flush a written file to the disk before it is renamed over an earlier one: a crash just
    after the rename could otherwise leave an empty file where a whole one was (ext4, XFS)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def carry_over(folder: Path, staging: Path, owned: set[str]) -> None:
    """Copy what ``folder`` holds, but the ``owned`` names, into the ``staging`` folder replacing it.

    A save owns only its own files; a licence or a user's notes beside them survive the swap of
    :func:`staged_folder` (a prompt model's card too, unless the model saved no longer matches it).
    """
    if not folder.is_dir():
        return
    for item in folder.iterdir():
        if item.name in owned:
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.copytree(item, staging / item.name, symlinks=True)
        else:
            shutil.copy2(item, staging / item.name, follow_symlinks=False)
