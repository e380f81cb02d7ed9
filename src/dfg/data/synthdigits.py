"""synthdigits: digits 0-9 rendered from the TrueType fonts matplotlib ships, with random affine jitter.

An offline stand-in for EMNIST-digits as LeNet-5's source dataset (the "SynDigits" practice of
rendering digits from fonts). Each (font, digit) glyph is rendered once with Pillow, cropped to its
ink and centred in a 64 px template; every sample then draws a rotation, shear, scale and shift
(params prepare.synthdigits) and is resampled from its template in one batched `grid_sample`, then
2x2-averaged to 32 px (antialiasing). White digit on black, like MNIST. Deterministic given the seed
and matplotlib's font files (their names are recorded in meta.json).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfg import DfgError
from dfg.data.prepared import write_arrays
from dfg.data.registry import DatasetSpec, register

SIDE = 32
TEMPLATE = 2 * SIDE  # glyph templates are rendered at twice the output size, then averaged 2x2
GLYPH_FRACTION = 0.85  # glyph's longer side / image side at scale 1.0 (MNIST: 20 px box in 28 px)
RENDER_PT = 96  # font size of the first rasterisation, before cropping to the ink
CHUNK = 4096  # samples resampled per grid_sample call (bounds memory: CHUNK * 64 * 64 floats)
# Text fonts with ordinary lining digits among matplotlib's bundled ones (mpl-data/fonts/ttf). Left out:
# symbol/size variants (STIXSiz*, STIXNonUni*, cmex10, cmsy10), cmmi10 (old-style figures), display cuts.
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf",
)


def font_paths() -> list[Path]:
    import matplotlib

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [font_dir / f for f in FONT_FILES if (font_dir / f).is_file()]
    if not paths:
        raise DfgError(f"no TrueType fonts found in {font_dir}; reinstall matplotlib")
    return paths


def render_templates(paths: list[Path]) -> np.ndarray:
    """[F, 10, TEMPLATE, TEMPLATE] float32 in [0, 1]: each digit of each font, ink-cropped and centred."""
    from PIL import Image, ImageDraw, ImageFont

    out = np.zeros((len(paths), 10, TEMPLATE, TEMPLATE), dtype=np.float32)
    box = round(GLYPH_FRACTION * TEMPLATE)
    for f, path in enumerate(paths):
        font = ImageFont.truetype(str(path), RENDER_PT)
        for d in range(10):
            canvas = Image.new("L", (3 * RENDER_PT, 3 * RENDER_PT), 0)
            ImageDraw.Draw(canvas).text((RENDER_PT, RENDER_PT), str(d), fill=255, font=font)
            bbox = canvas.getbbox()
            if bbox is None:
                raise DfgError(f"font {path.name} renders no ink for digit {d}")
            glyph = canvas.crop(bbox)
            k = box / max(glyph.size)
            w, h = max(1, round(glyph.width * k)), max(1, round(glyph.height * k))
            glyph = glyph.resize((w, h), Image.Resampling.LANCZOS)
            tile = Image.new("L", (TEMPLATE, TEMPLATE), 0)
            tile.paste(glyph, ((TEMPLATE - w) // 2, (TEMPLATE - h) // 2))
            out[f, d] = np.asarray(tile, dtype=np.float32) / 255.0
    return out


def draw_affines(rng: np.random.Generator, n: int, cfg: dict) -> np.ndarray:
    """[n, 2, 3] sampling matrices (output -> template coordinates in [-1, 1]) for affine_grid."""
    rot = np.deg2rad(rng.uniform(-cfg["max_rotation_deg"], cfg["max_rotation_deg"], n))
    shear = rng.uniform(-cfg["max_shear"], cfg["max_shear"], n)
    scale = rng.uniform(cfg["scale_range"][0], cfg["scale_range"][1], n)
    shift = rng.uniform(-cfg["max_shift"], cfg["max_shift"], (n, 2)) * 2.0  # fraction of side -> [-1, 1] units
    c, s = np.cos(rot), np.sin(rot)
    # forward map: x -> R(rot) @ Shear(shear) @ (scale * x) + shift
    fwd = np.empty((n, 2, 2))
    fwd[:, 0, 0], fwd[:, 0, 1] = c * scale, (c * shear - s) * scale
    fwd[:, 1, 0], fwd[:, 1, 1] = s * scale, (s * shear + c) * scale
    inv = np.linalg.inv(fwd)
    theta = np.concatenate([inv, -(inv @ shift[:, :, None])], axis=2)
    return theta.astype(np.float32)


def generate(parts: tuple[int, ...], cfg: dict, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 [n, 32, 32, 1], labels int64 [n], font names) for n = sum(parts), deterministic per
    seed; each consecutive part (train, test) is class-balanced up to its remainder mod 10."""
    import torch
    import torch.nn.functional as F

    paths = font_paths()
    templates = torch.from_numpy(render_templates(paths))
    rng = np.random.default_rng(seed)
    labels = np.concatenate([rng.permutation(np.arange(k) % 10) for k in parts]).astype(np.int64)
    n = len(labels)
    fonts = rng.integers(0, len(paths), n)
    theta = torch.from_numpy(draw_affines(rng, n, cfg))
    out = np.empty((n, SIDE, SIDE, 1), dtype=np.uint8)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        src = templates[torch.from_numpy(fonts[a:b]), torch.from_numpy(labels[a:b])][:, None]
        grid = F.affine_grid(theta[a:b], [b - a, 1, TEMPLATE, TEMPLATE], align_corners=False)
        warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        small = F.avg_pool2d(warped, 2)
        out[a:b, :, :, 0] = (small[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return out, labels, [p.name for p in paths]


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    cfg = params["prepare"]["synthdigits"]
    x, y, fonts = generate((cfg["n_train"], cfg["n_test"]), cfg, cfg["seed"])
    n = cfg["n_train"]
    write_arrays(out_dir, spec, (x[:n], y[:n]), (x[n:], y[n:]), extra={"params": dict(cfg), "fonts": fonts})


SPEC = register(DatasetSpec(
    name="synthdigits", num_classes=10, classes=tuple("0123456789"), files=(),
    mirror_dirs=(), image_size=SIDE, channels=1,
    native_format="generated: digits rendered from matplotlib's TrueType fonts with affine jitter",
    prepare_fn=prepare,
))
