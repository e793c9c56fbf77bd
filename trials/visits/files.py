"""Files of CRF `file` items: what an upload is (read from its bytes), whether the item accepts it,
and keeping it in the configured storage with a thumbnail for images.

The kind of a file is read from its first bytes (the signatures the formats' specifications
define), never from its name or the browser's content type: a PNG renamed `.pdf` is a PNG. An image
must also open with Pillow (a truncated or forged header is refused), and its thumbnail is a PNG
re-encoded by Pillow, so what the CRF page shows inline is never the uploaded bytes themselves.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext as _

from trials.protocol.engine import Item

STORAGE_ALIAS = "crf_files"
THUMBNAIL_SIZE = (240, 240)
# Pillow refuses images above this many pixels (a "decompression bomb"): 50 megapixels is a large photograph.
MAX_IMAGE_PIXELS = 50_000_000

# Signatures: JPEG (ITU-T T.81 / JFIF: SOI marker FF D8 then a marker FF), PNG (PNG spec §5.2, the
# 8-byte signature), PDF (ISO 32000-1 §7.5.2: the header "%PDF-").
SIGNATURES: tuple[tuple[bytes, str, str, str], ...] = (
    (b"\xff\xd8\xff", "jpeg", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "png", "image/png", ".png"),
    (b"%PDF-", "pdf", "application/pdf", ".pdf"),
)
KIND_LABELS = {"jpeg": "JPEG", "png": "PNG", "pdf": "PDF"}
# What each `accept` kind of the CRF file admits.
ACCEPTS = {"image": {"jpeg", "png"}, "jpeg": {"jpeg"}, "png": {"png"}, "pdf": {"pdf"}}
IMAGE_KINDS = {"jpeg", "png"}
EXTENSIONS = {kind: extension for _sig, kind, _type, extension in SIGNATURES}
CONTENT_TYPES = {kind: content_type for _sig, kind, content_type, _ext in SIGNATURES}


def storage() -> Storage:
    return storages[STORAGE_ALIAS]


def sniff(head: bytes) -> str | None:
    """The kind of a file from its first bytes (None: none we know)."""
    for signature, kind, _content_type, _extension in SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def accepted_kinds(item: Item) -> set[str]:
    return set().union(*(ACCEPTS[kind] for kind in item.accept)) if item.accept else set()


def accept_attribute(item: Item) -> str:
    """The `accept` attribute of the file input: a hint for the browser's file picker only."""
    kinds = accepted_kinds(item)
    return ",".join(sorted({CONTENT_TYPES[k] for k in kinds} | {EXTENSIONS[k] for k in kinds} | ({".jpeg"} if "jpeg" in kinds else set())))


def describe_accept(item: Item) -> str:
    return ", ".join(KIND_LABELS[k] for k in sorted(accepted_kinds(item)))


@dataclass
class Upload:
    """An upload that passed the item's checks, not stored yet (the page's save stores it)."""

    data: bytes
    name: str
    kind: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def pending_answer(self) -> dict:
        """The answer until the save stores the file: a reference with no id yet, and the upload."""
        return {
            "file_id": None, "name": self.name, "size": len(self.data), "sha256": self.sha256,
            "content_type": CONTENT_TYPES[self.kind], "_upload": self,
        }


def check_upload(item: Item, uploaded: UploadedFile) -> tuple[Upload | None, str | None]:
    """The upload if the item accepts it, else the message for the field. Reads at most the
    item's limit (plus one byte, to know it is over) whatever size the request claims."""
    limit = (item.max_size_kb or 0) * 1024
    if uploaded.size is not None and uploaded.size > limit:
        return None, _too_large(item)
    uploaded.seek(0)
    data = uploaded.read(limit + 1)
    if len(data) > limit:
        return None, _too_large(item)
    if not data:
        return None, _("The file is empty.")
    kind = sniff(data[:16])
    if kind is None or kind not in accepted_kinds(item):
        return None, _("This file is not of an accepted type (%(accepted)s); its content was checked, not its name.") % {
            "accepted": describe_accept(item)}
    if kind in IMAGE_KINDS and not _image_opens(data):
        return None, _("This image cannot be read (damaged or incomplete file).")
    name = (uploaded.name or "").replace("\x00", "").replace("/", "_").replace("\\", "_").strip()[:200] or "file"
    return Upload(data=data, name=name, kind=kind), None


def _too_large(item: Item) -> str:
    size = item.max_size_kb or 0
    readable = f"{size / 1024:g} MB" if size >= 1024 else f"{size} kB"
    return _("This file is too large: at most %(size)s.") % {"size": readable}


def _image_opens(data: bytes) -> bool:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes the whole image: a truncated file raises here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
    return True


def _thumbnail(data: bytes) -> bytes | None:
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)  # a phone's photograph the right way up
            image.thumbnail(THUMBNAIL_SIZE)
            out = io.BytesIO()
            image.convert("RGBA" if image.mode in {"RGBA", "LA", "P"} else "RGB").save(out, format="PNG")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return out.getvalue()


def store_upload(upload: Upload, *, user, visit, crf_code: str, item_path: str):  # noqa: ANN001, ANN201
    """Write the upload (and an image's thumbnail) under random names and record it; returns the
    StoredFile. Called inside the save's transaction: if the save fails, the row goes and the
    bytes stay as an unreferenced file in the storage (never served: no row points at it)."""
    from trials.visits.models import StoredFile

    target = storage()
    stem = f"crf/{uuid.uuid4().hex}"
    stored_name = target.save(stem, ContentFile(upload.data))
    thumbnail_name = ""
    if upload.kind in IMAGE_KINDS:
        thumbnail = _thumbnail(upload.data)
        if thumbnail is not None:
            thumbnail_name = target.save(f"{stem}.thumb.png", ContentFile(thumbnail))
    return StoredFile.objects.create(
        participant=visit.participant, visit=visit, crf_code=crf_code, item=item_path, original_name=upload.name,
        size=len(upload.data), sha256=upload.sha256, content_type=CONTENT_TYPES[upload.kind], storage_name=stored_name,
        thumbnail_name=thumbnail_name, uploaded_by=user,
    )


def reference(stored) -> dict:  # noqa: ANN001
    """The stored answer of a file item."""
    return {
        "file_id": str(stored.pk), "name": stored.original_name, "size": stored.size, "sha256": stored.sha256,
        "content_type": stored.content_type,
    }


def is_pending(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("_upload"), Upload)


def store_pending(answers: dict, *, schema, user, visit, crf_code: str) -> list:  # noqa: ANN001
    """Store every upload a validated submission holds and put its reference in its place;
    returns the StoredFile rows made."""
    made = []
    for item in schema.items:
        if item.type == "file" and is_pending(answers.get(item.name)):
            stored = store_upload(answers[item.name]["_upload"], user=user, visit=visit, crf_code=crf_code, item_path=item.name)
            answers[item.name] = reference(stored)
            made.append(stored)
    for group in schema.groups:
        for row in answers.get(group.name) or []:
            for child in group.children:
                if child.type == "file" and is_pending(row.get(child.name)):
                    path = f"{group.name}[{row.get('_row_id')}].{child.name}"
                    stored = store_upload(row[child.name]["_upload"], user=user, visit=visit, crf_code=crf_code, item_path=path)
                    row[child.name] = reference(stored)
                    made.append(stored)
    return made


def file_answers(schema, answers: dict) -> dict[tuple[str, str, str], object]:  # noqa: ANN001
    """Every file answer of an entry by (group, row id, item) ("" for top-level items)."""
    out: dict[tuple[str, str, str], object] = {}
    for item in schema.items:
        if item.type == "file" and answers.get(item.name) is not None:
            out[("", "", item.name)] = answers.get(item.name)
    for group in schema.groups:
        for row in answers.get(group.name) or []:
            if not isinstance(row, dict):
                continue
            for child in group.children:
                if child.type == "file" and row.get(child.name) is not None:
                    out[(group.name, str(row.get("_row_id")), child.name)] = row.get(child.name)
    return out
