"""``load_image`` as diffusers' ``utils/loading_utils.py`` has it, fetching URLs with the standard library."""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from typing import Callable

import PIL.Image
import PIL.ImageOps

# Seconds; the value of diffusers' DIFFUSERS_REQUEST_TIMEOUT (utils/constants.py).
REQUEST_TIMEOUT = 60


def _fetch(url: str) -> PIL.Image.Image:
    """Downloads ``url`` into memory; any network failure is an OSError naming the URL."""
    request = urllib.request.Request(url, headers={"User-Agent": "native_diffusers"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            data = response.read()
    except urllib.error.HTTPError as e:
        raise OSError(f"Could not download the image at {url}: HTTP {e.code} {e.reason}.") from e
    except (urllib.error.URLError, OSError) as e:  # no route, refused, DNS, timeout
        reason = getattr(e, "reason", e)
        raise OSError(f"Could not download the image at {url}: {reason}.") from e
    return PIL.Image.open(io.BytesIO(data))


def load_image(
    image: str | os.PathLike | PIL.Image.Image,
    convert_method: Callable[[PIL.Image.Image], PIL.Image.Image] | None = None,
) -> PIL.Image.Image:
    """Loads a URL, a local path or a PIL image as a PIL image, EXIF-upright, in RGB unless
    ``convert_method`` says otherwise. Mirrors diffusers' ``load_image``."""
    if isinstance(image, os.PathLike):
        # diffusers takes only str; a pathlib.Path means the same file, so accept it.
        image = os.fspath(image)
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):
            image = _fetch(image)
        elif os.path.isfile(image):
            image = PIL.Image.open(image)
        else:
            raise ValueError(
                f"Incorrect path or URL. URLs must start with `http://` or `https://`, and {image} is not a valid"
                " path."
            )
    elif not isinstance(image, PIL.Image.Image):
        raise ValueError(  # noqa: TRY004  (diffusers' exception type)
            "Incorrect format used for the image. Should be a URL linking to an image, a local path, or a PIL image."
        )

    # Cameras store rotation as an EXIF tag; pixels must come out the way the photo is viewed.
    image = PIL.ImageOps.exif_transpose(image)

    if convert_method is not None:
        return convert_method(image)
    return image.convert("RGB")
