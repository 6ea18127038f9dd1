"""Annotated sets: a folder of images, labels and corrected-pixel masks that grows as people work.

Layout of a set folder::

    dataset.json          manifest (written last, atomically)
    images/NAME.tif       the image as given, (Y, X) or (Y, X, C)
    labels/NAME.tif       uint8: 0 background, 1..K classes, 255 (IGNORE_LABEL) not annotated
    corrected/NAME.tif    optional uint8 mask (1 = a person edited or confirmed this pixel)

Every change (adding or updating an item) holds the set's folder lock
(:func:`~napari_fcnseg.io.locking.folder_lock`, ``.lock``), rereads the manifest, so that items
other processes added meanwhile are kept, and runs as a transaction (:mod:`._set_journal`): the
item's files are written to ``.staging/``, a commit record is written, then the files are moved
into place and the manifest replaced. A process killed at any point leaves the set as it was or
as it would be after the change (an interrupted commit is finished by the next change, or when
the set is opened); the manifest never points at missing or half-written files.

**Split rule.** An item added without an explicit ``split`` goes to validation when the first
8 bytes of the SHA-256 of its name, read as a fraction of 2**64, are below 0.2 (so about 20% of
items, and the same name always lands on the same side). When a set has two or more items and
none is in validation, the automatically split item with the smallest such hash goes to
validation. A split given explicitly is always kept.

A plain folder pair ``images/`` + ``labels/`` without ``dataset.json`` (images TIFF/PNG/JPEG,
labels TIFF/PNG named ``NAME.ext`` or ``NAME_labels.ext``) opens read-only, every item counting
as annotated, with the same split rule.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputExistsError
from ..io.atomic import atomic_output, writing_to
from ..io.images import read_image
from ..io.labels import read_labels, write_labels
from ..io.locking import LOCK_NAME, folder_lock
from . import _set_journal as journal
from ._set_files import auto_splits, class_names_from_labels, find_plain_pairs, validate_split
from .samples import IGNORE_LABEL, TrainingSample

__all__ = ["IGNORE_LABEL", "MANIFEST", "AnnotatedSet", "Item"]

log = logging.getLogger(__name__)

MANIFEST = "dataset.json"
FORMAT_NAME = "napari-fcnseg annotated set"
FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass
class Item:
    """One annotated image of a set, as recorded in the manifest.

    Attributes
    ----------
    name
        Unique name; also the files' stem.
    image, labels, corrected
        File paths relative to the set folder (``corrected`` is ``None`` without a mask).
    source, slice_index
        File and Z slice the image came from, when known.
    added, updated
        ISO 8601 UTC timestamps.
    model_version
        Model that predicted the labels before a person corrected them, if any.
    corrected_pixels
        Number of pixels a person edited or confirmed.
    split
        ``"train"`` or ``"val"``.
    split_auto
        True when ``split`` comes from the rule in the module docstring.
    """

    name: str
    image: str
    labels: str
    corrected: str | None = None
    source: str | None = None
    slice_index: int | None = None
    added: str = ""
    updated: str = ""
    model_version: str | None = None
    corrected_pixels: int = 0
    split: str = "train"
    split_auto: bool = True

    @property
    def added_at(self) -> _dt.datetime:
        """When the item was first added (timezone-aware)."""
        return _dt.datetime.fromisoformat(self.added)


class AnnotatedSet:
    """A folder of annotated images; see the module docstring for the format."""

    def __init__(self, path: Path, class_names: list[str], items: list[Item], *, plain: bool):
        self.path = path
        self._class_names = list(class_names)
        self._items = {item.name: item for item in items}
        self.plain = plain

    # ------------------------------------------------------------------ opening and creating
    @classmethod
    def create(cls, path: str | os.PathLike[str], class_names: list[str]) -> AnnotatedSet:
        """Start a new, empty set in ``path`` (created if needed; an existing set is opened).

        Raises
        ------
        InputError
            When ``path`` is a non-empty folder that is not a set, or the class names are bad.
        """
        path = Path(path)
        if not (path / MANIFEST).is_file():
            _check_new_folder(path)
            _check_class_names(class_names)
            with writing_to(path, "annotated set"):
                path.mkdir(parents=True, exist_ok=True)
        with folder_lock(path, what="annotated set"):
            if (path / MANIFEST).is_file():  # (another process may have just created it)
                journal.recover(path)
                existing = cls._from_manifest(path, path / MANIFEST)
                if existing.class_names != list(class_names):
                    raise InputError(
                        f"{path} is already a set with classes {existing.class_names}, not "
                        f"{list(class_names)}; use that set as it is or choose another folder"
                    )
                return existing
            _check_new_folder(path)
            annotated = cls(path, list(class_names), [], plain=False)
            with atomic_output(path / MANIFEST) as tmp:
                tmp.write_text(annotated._manifest_text(annotated._items), encoding="utf-8")
        return annotated

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> AnnotatedSet:
        """Open a set folder, or a plain ``images/`` + ``labels/`` folder pair (read-only)."""
        path = Path(path)
        manifest = path / MANIFEST
        if manifest.is_file():
            _finish_interrupted_change(path)
            return cls._from_manifest(path, manifest)
        if (path / "images").is_dir() and (path / "labels").is_dir():
            return cls._from_plain_pair(path)
        raise InputError(
            f"{path} is not an annotated set (no {MANIFEST}) nor a folder with images/ and "
            "labels/ subfolders; create one with `fcnseg add --set DIR ...`"
        )

    @classmethod
    def _from_manifest(cls, path: Path, manifest: Path) -> AnnotatedSet:
        try:
            raw = json.loads(manifest.read_text(encoding="utf-8"))
            if raw.get("format") != FORMAT_NAME:
                raise ValueError("not a napari-fcnseg set manifest")
            if int(raw["format_version"]) > FORMAT_VERSION:
                raise InputError(
                    f"{manifest} uses set format {raw['format_version']}, newer than this "
                    "napari-fcnseg understands; upgrade napari-fcnseg"
                )
            known = set(Item.__dataclass_fields__)
            items = [Item(**{k: v for k, v in it.items() if k in known}) for it in raw["items"]]
            class_names = [str(n) for n in raw["class_names"]]
        except InputError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{manifest} is not a valid set manifest ({exc}); restore it from "
                "a backup or start a new set"
            ) from None
        for item in items:
            _check_manifest_entry(item, manifest)
        return cls(path, class_names, items, plain=False)

    @classmethod
    def _from_plain_pair(cls, path: Path) -> AnnotatedSet:
        pairs = find_plain_pairs(path / "images", path / "labels")
        items = []
        for name, (image, labels) in pairs.items():
            stamp = _dt.datetime.fromtimestamp(labels.stat().st_mtime, _dt.UTC)
            items.append(
                Item(
                    name,
                    str(image.relative_to(path)),
                    str(labels.relative_to(path)),
                    added=stamp.isoformat(),
                    updated=stamp.isoformat(),
                )
            )
        splits = auto_splits([it.name for it in items], {})
        for item in items:
            item.split = splits[item.name]
        names = class_names_from_labels([path / it.labels for it in items])
        return cls(path, names, items, plain=True)

    # ------------------------------------------------------------------ reading
    @property
    def class_names(self) -> list[str]:
        """Class names, index 0 the background."""
        return list(self._class_names)

    @property
    def items(self) -> list[Item]:
        """The items, in the order they were first added."""
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __getitem__(self, name: str) -> Item:
        return self._items[name]

    def added_on(self, date: _dt.date | None = None) -> list[Item]:
        """Items first added on ``date`` (local calendar day; default today)."""
        date = date or _dt.date.today()
        return [it for it in self._items.values() if it.added_at.astimezone().date() == date]

    def load_samples(self, split: str | None = None) -> list[TrainingSample]:
        """Read the items of one split (``"train"``, ``"val"``, or all for ``None``)."""
        if split is not None:
            validate_split(split)
        return [
            self.load_sample(it.name)
            for it in self._items.values()
            if split is None or it.split == split
        ]

    def load_sample(self, name: str) -> TrainingSample:
        """Read one item's image, labels and corrected mask."""
        item = self._items[name]
        image = read_image(self.path / item.image)
        data = np.asarray(image.data)
        if image.layout.is_stack:
            raise InputError(f"{self.path / item.image}: set items must be 2D images, not stacks")
        if image.layout.axes == "CYX":
            data = np.moveaxis(data, 0, -1)
        labels = read_labels(self.path / item.labels)
        corrected = None
        if item.corrected:
            corrected = read_labels(self.path / item.corrected).astype(bool)
        return TrainingSample(data, labels, corrected, name=item.name)

    # ------------------------------------------------------------------ writing
    def add_item(
        self,
        image: np.ndarray,
        labels: np.ndarray,
        corrected: np.ndarray | None = None,
        *,
        name: str,
        source: str | None = None,
        slice_index: int | None = None,
        model_version: str | None = None,
        split: str | None = None,
        replace: bool = True,
    ) -> Item:
        """Add an annotated image, or update the item of that name.

        Parameters
        ----------
        image
            (Y, X) or (Y, X, C) pixels.
        labels
            (Y, X) integers: 0 background, 1..K classes, :data:`IGNORE_LABEL` not annotated.
        corrected
            Optional (Y, X) mask of the pixels a person edited or confirmed.
        name
            Item name (letters, digits, ``.``, ``_``, ``-``); an existing name is updated.
        source, slice_index, model_version
            Provenance recorded in the manifest.
        split
            ``"train"`` or ``"val"``; ``None`` applies the split rule (module docstring).
        replace
            When false, an existing name raises :class:`OutputExistsError`.

        Raises
        ------
        InputError
            When the arrays or the name cannot be used, or the set is a read-only plain folder.
        OutputExistsError
            When ``replace`` is false and the name exists.
        BusyError
            When another process keeps the set locked for more than a minute.
        """
        if self.plain:
            raise InputError(
                f"{self.path} is a plain images/ + labels/ folder, which is read-only; "
                "add the items to an annotated set in another folder instead"
            )
        check_item_name(name)
        if split is not None:
            validate_split(split)
        image, labels, mask = self._check_arrays(image, labels, corrected, name)
        with writing_to(self.path, "annotated set"), folder_lock(self.path, what="annotated set"):
            self._reload()
            if name in self._items and not replace:
                raise OutputExistsError(
                    f"the set {self.path} already has an item named {name!r}; "
                    "pass replace=True to update it or choose another name"
                )
            now = _dt.datetime.now(_dt.UTC).isoformat()
            old = self._items.get(name)
            item = Item(
                name,
                f"images/{name}.tif",
                f"labels/{name}.tif",
                f"corrected/{name}.tif" if mask is not None else None,
                source=source,
                slice_index=slice_index,
                added=old.added if old else now,
                updated=now,
                model_version=model_version,
                corrected_pixels=int(mask.sum()) if mask is not None else 0,
                split=split or "train",
                split_auto=split is None,
            )
            items = {n: dataclasses.replace(it) for n, it in self._items.items()}
            items[name] = item
            stale = [old.corrected] if old and old.corrected and not item.corrected else []
            self._commit_item(item, image, labels, mask, items, stale)
            self._items = items
        return self._items[name]

    def _reload(self) -> None:
        """Finish an interrupted change and reread the manifest (call with the lock held)."""
        journal.recover(self.path)
        manifest = self.path / MANIFEST
        if manifest.is_file():
            self._items = dict(self._from_manifest(self.path, manifest)._items)

    def _check_arrays(
        self, image: np.ndarray, labels: np.ndarray, corrected: np.ndarray | None, name: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        image, labels = np.asarray(image), np.asarray(labels)
        if image.ndim not in (2, 3) or image.dtype.kind not in "uif" or image.size == 0:
            raise InputError(
                f"{name}: the image must be a non-empty (Y, X) or (Y, X, C) array "
                f"of numbers, got shape {image.shape} {image.dtype}"
            )
        if labels.shape != image.shape[:2] or labels.dtype.kind not in "uib":
            raise InputError(
                f"{name}: labels shaped {labels.shape} ({labels.dtype}) must be "
                f"integers shaped like the image's {image.shape[:2]}"
            )
        values = np.unique(labels)
        bad = values[(values >= len(self._class_names)) & (values != IGNORE_LABEL)]
        if bad.size or (values < 0).any():
            raise InputError(
                f"{name}: labels hold {sorted(set(values.tolist()))[:6]} but the set has classes "
                f"0..{len(self._class_names) - 1} ({', '.join(self._class_names)}) and "
                f"{IGNORE_LABEL} for 'not annotated'"
            )
        mask = None
        if corrected is not None:
            mask = np.asarray(corrected).astype(bool)
            if mask.shape != labels.shape:
                raise InputError(
                    f"{name}: the corrected mask shaped {mask.shape} does not match "
                    f"the labels shaped {labels.shape}"
                )
        return image, labels.astype(np.uint8), mask

    def _commit_item(
        self,
        item: Item,
        image: np.ndarray,
        labels: np.ndarray,
        mask: np.ndarray | None,
        items: dict[str, Item],
        deletions: list[str],
    ) -> None:
        """Stage the item's files and commit them with the manifest of ``items``."""
        import tifffile

        staging = journal.new_staging_folder(self.path)
        try:
            moves: list[tuple[str, str]] = [("image.tif", item.image)]
            with atomic_output(staging / "image.tif") as tmp:
                photometric = "rgb" if image.ndim == 3 and image.shape[2] == 3 else "minisblack"
                tifffile.imwrite(
                    tmp,
                    image,
                    compression="zlib",
                    photometric=photometric,
                    metadata={"axes": "YXS" if image.ndim == 3 else "YX"},
                )
            write_labels(staging / "labels.tif", labels, class_names=self._class_names)
            moves.append(("labels.tif", item.labels))
            if mask is not None and item.corrected:
                write_labels(staging / "corrected.tif", mask.astype(np.uint8))
                moves.append(("corrected.tif", item.corrected))
            text = self._manifest_text(items)
        except BaseException:
            journal.discard(staging)
            raise
        journal.commit(self.path, staging, moves, MANIFEST, text, deletions)

    def _manifest_text(self, items: dict[str, Item]) -> str:
        """Return the manifest text for ``items`` (their automatic splits are set here)."""
        explicit = {n: it.split for n, it in items.items() if not it.split_auto}
        for name, split in auto_splits(list(items), explicit).items():
            items[name].split = split
        content = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "class_names": self._class_names,
            "split_rule": "sha256(name)[:8] / 2**64 < 0.2 -> val; at least one val item once "
            "there are >= 2 items; explicit splits kept",
            "items": [asdict(it) for it in items.values()],
        }
        return json.dumps(content, indent=1)


def _finish_interrupted_change(path: Path) -> None:
    """Replay a change a killed process left half-applied, so that reading sees a whole set."""
    if not journal.has_pending(path):
        return
    try:
        with folder_lock(path, what="annotated set"):
            journal.recover(path)
    except OSError as exc:  # e.g. a set on read-only media: read it as it is
        log.warning("%s: could not finish an interrupted change (%s)", path, exc)


def _check_manifest_entry(item: Item, manifest: Path) -> None:
    """Refuse an entry whose name or files could reach outside the set (a crafted manifest)."""
    files = [f for f in (item.image, item.labels, item.corrected) if f is not None]
    if not isinstance(item.name, str) or not _NAME.match(item.name):
        problem = f"the item name {item.name!r} is not usable"
    elif not all(isinstance(f, str) and journal.is_inside(f) for f in files):
        problem = f"item {item.name!r} names files outside the set ({files})"
    else:
        return
    raise InputError(
        f"{manifest}: {problem}; the manifest was edited by hand or damaged: fix that entry "
        "or restore the manifest from a backup"
    )


def _check_new_folder(path: Path) -> None:
    ours = {LOCK_NAME, journal.STAGING}
    if path.exists() and (not path.is_dir() or any(p.name not in ours for p in path.iterdir())):
        raise InputError(
            f"{path} exists and is not an empty folder or an annotated set; "
            "choose a new or empty folder for the set"
        )


def check_item_name(name: str) -> None:
    """Raise :class:`InputError` unless ``name`` is usable as an item (and file) name."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            f"item name {name!r} is not usable: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (see safe_item_name)"
        )


def safe_item_name(text: str) -> str:
    """Turn e.g. a file stem into a valid item name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._-")[:200]
    return name or "item"


def _check_class_names(class_names: list[str]) -> None:
    if len(class_names) < 2 or len(class_names) >= IGNORE_LABEL:
        raise InputError(
            f"a set needs 2 to {IGNORE_LABEL - 1} class names (background first), got "
            f"{len(class_names)}: e.g. background,egg"
        )
    if len(set(class_names)) != len(class_names) or not all(str(n).strip() for n in class_names):
        raise InputError(f"class names must be distinct and non-empty, got {class_names}")
