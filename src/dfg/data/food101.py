"""Food-101: food-101.tar.gz with food-101/images/<class>/<id>.jpg (101 000 images, at most 512 px) and
food-101/meta/{classes.txt, train.txt, test.txt}: the official 750/250 per-class lists ("class/id").

Streamed once: every image is resized to prepare.image_size² (squashed, antialiased) into
images/<class>/<id>.jpg as it passes, and the index is built from the official lists at the end.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from dfg import DfgError
from dfg.data.imageops import JpegWriter
from dfg.data.prepared import write_index
from dfg.data.rawio import iter_tar, require
from dfg.data.registry import DatasetSpec, RemoteFile, register

# torchvision.datasets.Food101: URL and MD5 of the archive.
ARCHIVE = "food-101.tar.gz"
FILES = (RemoteFile(ARCHIVE, ("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",),
                    md5="85eeb15f3717b99a5da872d97d918f87"),)
NUM_CLASSES = 101
META_FILES = ("classes.txt", "train.txt", "test.txt")


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    (archive,) = require(raw_dir, ARCHIVE)
    size, quality = params["prepare"]["image_size"], params["prepare"]["jpeg_quality"]
    meta: dict[str, list[str]] = {}
    written: set[str] = set()
    with JpegWriter(size, quality) as writer:
        for name, read in iter_tar(archive):
            parts = name.parts
            if len(parts) >= 2 and parts[-2] == "meta" and name.name in META_FILES:
                text = read().decode("utf-8")
                meta[name.name] = [line.strip() for line in text.splitlines() if line.strip()]
            elif len(parts) >= 3 and parts[-3] == "images" and name.suffix.lower() == ".jpg":
                key = f"{parts[-2]}/{name.stem}"
                writer.submit(read(), f"{archive}:{name}", out_dir / "images" / f"{key}.jpg")
                written.add(key)
    missing_meta = [m for m in META_FILES if m not in meta]
    if missing_meta:
        raise DfgError(f"{archive} lacks meta/{', meta/'.join(missing_meta)}; is it the official archive?")
    classes = meta["classes.txt"]
    label_of = {c: i for i, c in enumerate(classes)}
    index: dict[str, list[tuple[str, int]]] = {}
    for split in ("train", "test"):
        keys = meta[f"{split}.txt"]
        absent = [k for k in keys if k not in written]
        unknown = sorted({k.split("/")[0] for k in keys} - set(label_of))
        if absent or unknown:
            raise DfgError(f"{archive}: meta/{split}.txt names {len(absent)} images not in the archive "
                           f"(e.g. {absent[:3]}) or unknown classes {unknown[:3]}; fetch the archive again")
        index[split] = [(str(PurePosixPath("images", f"{k}.jpg")), label_of[k.split("/")[0]]) for k in keys]
    write_index(out_dir, spec, classes, index, extra={"image_size": size})


SPEC = register(DatasetSpec(
    name="food101", num_classes=NUM_CLASSES, classes=(), files=FILES,
    mirror_dirs=("food101", "food-101"), image_size=256, channels=3,
    native_format="tar.gz of JPEGs images/<class>/<id>.jpg + meta/{classes,train,test}.txt (75 750 / 25 250)",
    prepare_fn=prepare, download_mb=4996, homepage="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
))
