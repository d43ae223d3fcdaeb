"""Each adapter's image conversion equals its authors' pipeline on greyscale, 16-bit and RGB files.

The authors' pipelines are re-derived here from their published steps with Pillow and numpy
(torchvision is not a dependency): RadFM's Quick_demo/test.py, MedVInT's PMC_QA_Dataset test
transform, open_clip's ViT-L-14 eval transform (OpenFlamingo, Med-Flamingo), and LLaVA-Med's
``process_images`` followed by transformers' CLIPImageProcessor. Their random steps (RadFM's
test-time RandomResizedCrop, LLaVA's 0/1-pixel paste jitter) are taken at radbench's
deterministic choice: the whole image, the lower offset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radbench import images
from radbench.models import flamingo, llava_med, medvint, radfm
from radbench.types import ImageRef

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE = 28


def _to_tensor(pil: Image.Image) -> np.ndarray:
    """torchvision's ToTensor on an RGB PIL image: (3, H, W) / 255."""
    return np.asarray(pil, dtype=np.float32).transpose(2, 0, 1) / 255.0


def _normalize(arr: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    return (arr - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]


def authors_radfm(path: Path) -> np.ndarray:
    """Quick_demo/test.py: ``Image.open(...).convert('RGB')``, then the crop (at scale 1, centred:
    a resize of the whole image) to 512 bicubic, ToTensor; no normalisation."""
    image = Image.open(path).convert("RGB")
    return _to_tensor(image.resize((SIZE, SIZE), Image.BICUBIC))


def authors_medvint(path: Path) -> np.ndarray:
    """PMC_QA_Dataset: ``convert('RGB')``, Resize((H, W), BICUBIC), ToTensor, Normalize(ImageNet)."""
    image = Image.open(path).convert("RGB")
    return _normalize(_to_tensor(image.resize((SIZE, SIZE), Image.BICUBIC)), IMAGENET_MEAN, IMAGENET_STD)


def authors_open_clip(path: Path) -> np.ndarray:
    """open_clip ``image_transform`` (eval): Resize(S, BICUBIC) on the shortest side (the long side
    ``int(S * long / short)``), CenterCrop(S) (offsets ``int(round((h - S) / 2))``), then
    ``_convert_to_rgb``, ToTensor, Normalize(OpenAI)."""
    image = Image.open(path)
    w, h = image.size
    new_w, new_h = (SIZE, int(SIZE * h / w)) if w <= h else (int(SIZE * w / h), SIZE)
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - SIZE) / 2.0)), int(round((new_w - SIZE) / 2.0))
    image = image.crop((left, top, left + SIZE, top + SIZE)).convert("RGB")
    return _normalize(_to_tensor(image), OPENAI_MEAN, OPENAI_STD)


def authors_llava(path: Path, pad: bool = True) -> np.ndarray:
    """LLaVA-Med ``process_images`` (``image_aspect_ratio == 'pad'``): the pad colour by mode, the
    image pasted at the lower of its two random offsets; then CLIPImageProcessor: convert_rgb, resize
    the shortest edge (PIL bicubic on uint8), center_crop with floor offsets, 1/255, normalise."""
    image = Image.open(path)  # model_vqa.py opens without converting
    if pad:
        if image.mode == "L":
            background = int(255 * sum(OPENAI_MEAN) / len(OPENAI_MEAN))
        else:
            background = tuple(int(x * 255) for x in OPENAI_MEAN)
        w, h = image.size
        if w != h:
            side = max(w, h)
            result = Image.new(image.mode, (side, side), background)  # raises for 16-bit modes
            result.paste(image, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
            image = result
    image = image.convert("RGB")
    w, h = image.size
    new_w, new_h = (SIZE, int(SIZE * h / w)) if w <= h else (int(SIZE * w / h), SIZE)
    arr = np.asarray(image.resize((new_w, new_h), Image.BICUBIC))
    top, left = (new_h - SIZE) // 2, (new_w - SIZE) // 2
    arr = arr[top : top + SIZE, left : left + SIZE].astype(np.float32) * np.float32(1 / 255)
    return _normalize(arr.transpose(2, 0, 1), OPENAI_MEAN, OPENAI_STD)


def _gradient(h: int, w: int, high: float) -> np.ndarray:
    """A diagonal ramp from 0 to ``high`` with a sharp bright square, so bicubic overshoot and
    clipping both happen near the 8-bit limit."""
    ramp = np.add.outer(np.arange(h), np.arange(w)) / (h + w - 2) * high
    ramp[h // 3 : h // 2, w // 3 : w // 2] = high
    return ramp


def _write(tmp_path: Path, kind: str, h: int, w: int) -> Path:
    path = tmp_path / f"{kind}-{h}x{w}.png"
    rng = np.random.default_rng(h * 1000 + w)
    if kind == "L":
        Image.fromarray(_gradient(h, w, 255).astype(np.uint8), "L").save(path)
    elif kind == "RGB":
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(path)
    else:  # a 16-bit greyscale PNG whose values straddle 255, as a raw radiograph export would
        Image.fromarray(_gradient(h, w, 600).astype(np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode == {"L": "L", "RGB": "RGB", "I16": "I;16"}[kind]
    return path


def _radbench(path: Path, spec: images.Preprocess) -> np.ndarray:
    return images.prepare(ImageRef(path.name, "2d", str(path.parent)), spec).array


SHAPES = [(30, 40), (40, 30), (33, 33), (29, 50), (28, 31)]  # 28x31: crop offsets 1.5, round vs floor


@pytest.mark.parametrize("kind", ["L", "I16", "RGB"])
@pytest.mark.parametrize("shape", SHAPES)
def test_radfm_and_medvint_convert_first_like_their_authors(tmp_path: Path, kind: str, shape: tuple[int, int]) -> None:
    path = _write(tmp_path, kind, *shape)
    assert np.allclose(_radbench(path, radfm.preprocess_spec(SIZE)), authors_radfm(path), atol=1e-6)
    assert np.allclose(_radbench(path, medvint.preprocess_spec(SIZE)), authors_medvint(path), atol=1e-5)


@pytest.mark.parametrize("kind", ["L", "I16", "RGB"])
@pytest.mark.parametrize("shape", SHAPES)
def test_flamingo_converts_to_rgb_after_resize_and_crop_like_open_clip(tmp_path: Path, kind: str,
                                                                      shape: tuple[int, int]) -> None:
    path = _write(tmp_path, kind, *shape)
    assert np.allclose(_radbench(path, flamingo.preprocess_spec(SIZE)), authors_open_clip(path), atol=1e-5)


def test_open_clip_order_matters_for_16_bit_files(tmp_path: Path) -> None:
    """The test above can fail: converting a 16-bit file first (RadFM's order) gives other pixels."""
    path = _write(tmp_path, "I16", 30, 40)
    first = images.Preprocess("x", SIZE, "shortest-edge-crop", "bicubic", OPENAI_MEAN, OPENAI_STD, rgb="first")
    assert np.abs(_radbench(path, first) - authors_open_clip(path)).max() > 0.05


@pytest.mark.parametrize("kind", ["L", "RGB"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pad", [True, False])
def test_llava_pads_by_mode_then_runs_the_clip_processor(tmp_path: Path, kind: str, shape: tuple[int, int],
                                                         pad: bool) -> None:
    path = _write(tmp_path, kind, *shape)
    assert np.allclose(_radbench(path, llava_med.preprocess_spec(SIZE, pad=pad)), authors_llava(path, pad), atol=1e-5)


def test_llava_pads_a_greyscale_file_with_grey_114(tmp_path: Path) -> None:
    path = _write(tmp_path, "L", 20, 40)
    out = _radbench(path, llava_med.preprocess_spec(SIZE, pad=True))
    corner = out[:, 0, 0] * np.array(OPENAI_STD) + np.array(OPENAI_MEAN)
    assert np.allclose(corner, 114 / 255, atol=1e-6)
    rgb = tmp_path / "rgb.png"
    Image.open(path).convert("RGB").save(rgb)  # the same pixels as RGB: mean-colour padding
    corner = _radbench(rgb, llava_med.preprocess_spec(SIZE, pad=True))[:, 0, 0]
    assert np.allclose(corner * np.array(OPENAI_STD) + np.array(OPENAI_MEAN), np.array([122, 116, 104]) / 255, atol=1e-6)


@pytest.mark.parametrize("shape", [(30, 40), (40, 30)])
def test_llava_16_bit_non_square_fails_in_the_authors_code_radbench_pads_grey(tmp_path: Path,
                                                                              shape: tuple[int, int]) -> None:
    path = _write(tmp_path, "I16", *shape)
    with pytest.raises(TypeError):
        authors_llava(path)
    out = _radbench(path, llava_med.preprocess_spec(SIZE, pad=True))
    grey = tmp_path / "grey.png"  # radbench's choice: what the authors do for the same pixels clipped to 8-bit L
    Image.open(path).convert("L").save(grey)
    assert np.allclose(out, authors_llava(grey), atol=1e-5)


def test_llava_16_bit_square_equals_the_authors(tmp_path: Path) -> None:
    path = _write(tmp_path, "I16", 33, 33)
    assert np.allclose(_radbench(path, llava_med.preprocess_spec(SIZE, pad=True)), authors_llava(path), atol=1e-5)
