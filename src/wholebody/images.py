"""Reading image files: one reader for the whole package, in the stored pixel frame, BGR.

:func:`read_image` is what training, evaluation, prediction and the dataset tools read images with.

* **Channel order**: (H, W, 3) uint8 **BGR** (OpenCV's order; consumers convert once, e.g.
  :func:`wholebody.data.dataset.warp_to_rgb`), or (H, W) uint8 with ``grey=True``.
* **Pixel frame**: the pixels as stored. An EXIF orientation tag is *not* applied: COCO's annotations
  and every box file are in the stored frame, so a tagged image read upright would put every label
  in the wrong place (and a 90-degree tag swaps width and height). :func:`exif_orientation` tells
  whether a file carries such a tag, for tools that want to say so.
* **Size limit**: an image of more than ``max_pixels`` pixels (default :data:`MAX_IMAGE_PIXELS`, 100
  megapixels) is an :class:`ImageReadError` naming the file and its size, from its header, **before**
  decoding (a 0.9 MB PNG of 30000 x 30000 pixels would decode to 2.7 GB and take 6.3 GB in predict).
  The size comes from the PNG / JPEG header (parsed here) or, for other formats, PIL's lazy open; data
  in a format neither reads goes to OpenCV, which keeps its own limit of 2^30 pixels.
* **Damaged files** are an :class:`ImageReadError` (one line naming the file): missing, empty,
  undecodable (a 1-byte file included), a JPEG without its end marker, and a JPEG whose compressed data
  stops early but ends in an (appended or rewritten) end marker. libjpeg decodes the last kind
  without an error, filling the missing part with grey, and reports it only as a warning on the
  process's standard error; the reader watches that stream while it decodes a JPEG (a per-process lock
  keeps threads from mixing their output) and treats libjpeg's "corrupt data" warnings as a damaged
  file. Anything else written there meanwhile is passed on unchanged.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np

from wholebody.cocowb import relative_file_name  # noqa: F401  (re-exported; defined with the file readers)

#: libjpeg(-turbo) warnings that mean the compressed data is damaged or cut short.
_JPEG_DAMAGE = (b"Corrupt JPEG data", b"Premature end of JPEG file", b"premature end of data segment")
#: Images of more pixels than this are refused before decoding (:func:`read_image`): decoded, a pixel
#: takes 3 bytes, and the decoder's buffers and the pipeline's copies several times that. 100 megapixels
#: (0.3 GB decoded) is far above any COCO image (at most 640 x 640) and a 50-megapixel camera's photos.
MAX_IMAGE_PIXELS = 100_000_000
_capture_lock = threading.Lock()
_capture: tuple[int, object] | None = None  # (pid, scratch file): a forked worker opens its own


class ImageReadError(OSError):
    """An image file that is missing, damaged, undecodable or not the size its record states."""

    def __init__(self, path: str | Path, reason: str | None = None):
        if reason is None:  # re-raised from a DataLoader worker with the message only
            path, _, reason = str(path).rpartition(": ")
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # picklable across DataLoader / process-pool workers
        return (type(self), (self.path, self.reason))


def _decode_watching_stderr(data: np.ndarray, flags: int) -> tuple[np.ndarray | None, bytes]:
    """``cv2.imdecode`` with file descriptor 2 sent to a scratch file; returns (image, what was written)."""
    global _capture
    with _capture_lock:
        if _capture is None or _capture[0] != os.getpid() or _capture[1].closed:
            _capture = (os.getpid(), tempfile.TemporaryFile())
        cap = _capture[1]
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no standard error at all (closed): nothing to watch, nothing libjpeg can print
            return cv2.imdecode(data, flags), b""
        try:
            os.dup2(cap.fileno(), 2)
            try:
                image = cv2.imdecode(data, flags)
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        n = cap.tell()
        text = b""
        if n:
            cap.seek(0)
            text = cap.read(n)
            cap.seek(0)
            cap.truncate()
    return image, text


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (they hold the image size): C0-CF but C4 (Huffman), C8 (reserved), CC (arithmetic).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(head: memoryview) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment of JPEG bytes; None if there is none."""
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", head[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            if i + 9 > len(head):
                return None
            h, w = struct.unpack(">HH", head[i + 5 : i + 9])
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def header_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) of an image from its encoded bytes, read from the header only (nothing decoded):
    parsed for PNG and JPEG, PIL's lazy open for other formats; None when neither can tell. An image PIL
    calls a decompression bomb (over twice ``PIL.Image.MAX_IMAGE_PIXELS``) is reported at that size."""
    buf = memoryview(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1) if isinstance(data, np.ndarray) else data)
    if len(buf) >= 24 and buf[:8] == _PNG_SIGNATURE and buf[12:16] == b"IHDR":
        w, h = struct.unpack(">II", buf[16:24])
        return w, h
    if buf[:2] == b"\xff\xd8":
        return _jpeg_size(buf)
    try:
        from PIL import Image
    except ImportError:  # (PIL comes with torchvision and matplotlib)
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(buf)) as im:
                return im.size
    except Image.DecompressionBombError:
        side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 1
        return side, side
    except Exception:  # noqa: BLE001 - not a format PIL knows (or a damaged header): the decoder says so
        return None


def read_image(path: str | Path, expected_size: tuple[int, int] | None = None, *, grey: bool = False,
               max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as stored: (H, W, 3) uint8 BGR, or (H, W) with ``grey``.

    ``expected_size``: (w, h) the image must have (the annotation's), else an error.
    ``max_pixels``: refuse, from the header and before decoding, an image of more pixels (default
    :data:`MAX_IMAGE_PIXELS`).

    Raises:
        ImageReadError: see the module docstring; the message names the file.
    """
    path = str(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot read ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageReadError(path, "empty file")
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    size = header_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise ImageReadError(path, f"image of {size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} megapixels), "
                             f"over the limit of {limit / 1e6:g} megapixels; not decoded (predict's "
                             "max_image_pixels setting raises the limit)")
    flags = (cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    if data.size >= 2 and data[0] == 0xFF and data[1] == 0xD8:  # JPEG
        if b"\xff\xd9" not in data[-32:].tobytes():
            raise ImageReadError(path, "truncated JPEG (no end-of-image marker)")
        image, libjpeg = _decode_watching_stderr(data, flags)
        damaged = next((w for w in _JPEG_DAMAGE if w in libjpeg), None)
        rest = libjpeg
        if damaged is not None:
            rest = b"".join(ln for ln in libjpeg.splitlines(keepends=True) if not any(w in ln for w in _JPEG_DAMAGE))
        if rest:
            os.write(2, rest)
        if damaged is not None:
            line = next(ln for ln in libjpeg.splitlines() if damaged in ln).decode(errors="replace").strip()
            raise ImageReadError(path, f"damaged JPEG data (libjpeg: {line})")
    else:
        image = cv2.imdecode(data, flags)
    if image is None:
        raise ImageReadError(path, "cannot decode image data")
    if expected_size is not None and (image.shape[1], image.shape[0]) != tuple(int(v) for v in expected_size):
        raise ImageReadError(
            path, f"image is {image.shape[1]}x{image.shape[0]} but its annotation says {expected_size[0]}x{expected_size[1]}"
        )
    return image


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file (1 = as stored; 2-8 = viewers flip/rotate it), reading
    the header only; 1 when there is none or the header cannot be read."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            value = im.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - no header, no tag: the reader itself reports unreadable files
        return 1
