"""The batch source: on-device augmentation, seeded epochs, class-weighted sampling, exact resume, the
ordered passes, and the DataLoader path for `format: files` data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare

from dfg import DfgError
from dfg.batches import IndexStream, build_task_data, normalise, random_crop, random_flip, stratified_subset
from loop_fixtures import write_prepared

CPU = torch.device("cpu")


def test_normalise_maps_to_minus_one_one():
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3)
    assert torch.allclose(normalise(x), torch.tensor([-1.0, 1.0, -0.6]).view(1, 1, 1, 3))


def test_random_crop_is_a_window_of_the_zero_padded_image():
    x = (torch.arange(32 * 32, dtype=torch.float32) + 1).view(1, 1, 32, 32).repeat(400, 2, 1, 1)
    gen = torch.Generator().manual_seed(0)
    out = random_crop(x, 32, 4, gen)
    assert out.shape == (400, 2, 32, 32)
    padded = torch.nn.functional.pad(x[0, 0], (4, 4, 4, 4))
    seen = set()
    for b in range(400):
        matches = [(oy, ox) for oy in range(9) for ox in range(9) if torch.equal(out[b, 0], padded[oy:oy + 32, ox:ox + 32])]
        assert len(matches) == 1 and torch.equal(out[b, 0], out[b, 1])
        seen.add(matches[0])
    assert len(seen) > 60  # 81 offsets, drawn independently per sample (expected ~79 distinct of 400)


def test_random_flip_flips_about_half():
    x = torch.arange(2000 * 4, dtype=torch.float32).view(2000, 1, 1, 4)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).all(dim=(1, 2, 3))
    kept = (out == x).all(dim=(1, 2, 3))
    assert bool((flipped ^ kept).all())
    assert 900 < int(flipped.sum()) < 1100


def test_index_stream_epochs_are_seeded_permutations():
    labels = torch.arange(100) % 5
    s = IndexStream(labels, 5, 32, seed=1)
    epoch = torch.cat([s.next() for _ in range(3)])  # 100 // 32 = 3 batches, the tail of 4 dropped
    assert len(set(epoch.tolist())) == 96
    again = IndexStream(labels, 5, 32, seed=1)
    assert torch.equal(torch.cat([again.next() for _ in range(3)]), epoch)
    other = IndexStream(labels, 5, 32, seed=2)
    assert not torch.equal(other.next(), epoch[:32])
    assert not torch.equal(s.next(), epoch[:32])  # the next epoch is reshuffled


def test_class_balanced_sampling_is_uniform_over_classes():
    counts = [500, 250, 50, 10, 5]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    s = IndexStream(labels, 5, 100, seed=0)
    s.set_class_weights(torch.ones(5))
    drawn = torch.cat([s.next() for _ in range(100)])  # 10 000 draws
    hist = torch.bincount(labels[drawn], minlength=5).numpy()
    assert chisquare(hist).pvalue > 0.001
    s.set_class_weights(torch.tensor([0.0, 0, 0, 0, 1]))
    assert set(labels[s.next()].tolist()) == {4}
    with pytest.raises(ValueError):
        s.set_class_weights(torch.ones(3))


@pytest.fixture()
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8)
    y = np.arange(120) % 4
    prepared = write_prepared(tmp_path / "tiny", x[:100], y[:100], x[100:], y[100:], "tiny", 4)
    return prepared, x, y


def make(prepared, **kw):
    args = {"batch_size": 16, "augment_kind": "crop_flip", "input_size": 32, "in_channels": 3, "seed": 3}
    args.update(kw)
    return build_task_data(prepared, np.arange(0, 100, 2), CPU, **args)


def test_train_batches_shapes_labels_and_iterate(tiny):
    prepared, x, y = tiny
    data = make(prepared)
    xb, yb = data.train.next()
    assert xb.shape == (16, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert float(xb.min()) >= -1 and float(xb.max()) <= 1
    assert data.class_counts.tolist() == [25, 0, 25, 0]  # even indices of labels 0 1 2 3 0 ...
    xs, ys = zip(*data.train.iterate(batch_size=7), strict=True)
    assert torch.equal(torch.cat(ys), torch.as_tensor(y[0:100:2]))
    expected = normalise(torch.as_tensor(x[0:100:2]).permute(0, 3, 1, 2))
    assert torch.equal(torch.cat(xs), expected)  # in order, not augmented
    assert len(data.test) == 20


def test_resume_state_reproduces_the_next_batches(tiny):
    prepared, _, _ = tiny
    a = make(prepared)
    for _ in range(5):
        a.train.next()
    a.train.set_class_weights(torch.ones(4))
    a.train.next()
    state = a.train.state_dict()
    want = [a.train.next() for _ in range(3)]
    b = make(prepared)
    b.train.load_state_dict(state)
    got = [b.train.next() for _ in range(3)]
    for (xa, ya), (xb, yb) in zip(want, got, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_max_test_is_a_stratified_seeded_subset():
    labels = np.repeat(np.arange(4), [400, 300, 200, 100])
    keep = stratified_subset(labels, 100, seed=5)
    assert len(keep) == 100 and np.bincount(labels[keep]).tolist() == [40, 30, 20, 10]
    assert np.array_equal(keep, stratified_subset(labels, 100, seed=5))
    assert len(stratified_subset(labels, 0, seed=5)) == 1000


def test_incompatible_data_is_a_clear_error(tiny):
    prepared, _, _ = tiny
    with pytest.raises(DfgError, match="channel"):
        make(prepared, in_channels=1)
    with pytest.raises(DfgError, match="px"):
        make(prepared, input_size=64, augment_kind="none")


def write_files_dataset(tmp_path, n_train=24, n_test=8, side=40):
    rng = np.random.default_rng(1)
    d = tmp_path / "files"
    (d / "images").mkdir(parents=True)
    pixels = {}
    for part, n in (("train", n_train), ("test", n_test)):
        with open(d / f"{part}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for i in range(n):
                arr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                rel = f"images/{part}{i}.png"  # PNG: lossless, so pixels can be compared exactly
                Image.fromarray(arr).save(d / rel)
                pixels[(part, i)] = arr
                w.writerow([rel, i % 3])
    meta = {"dataset": "files", "format": "files", "classes": ["a", "b", "c"], "num_classes": 3, "image_size": side,
            "channels": 3, "n_train": n_train, "n_test": n_test, "sha256": {}}
    (d / "meta.json").write_text(json.dumps(meta))
    return d, pixels


@pytest.mark.parametrize("workers", [0, 2])
def test_files_path_decodes_crops_and_resumes_exactly(tmp_path, workers):
    d, pixels = write_files_dataset(tmp_path)
    kw = {"batch_size": 4, "augment_kind": "resized_crop_flip", "input_size": 32, "in_channels": 3, "seed": 0,
          "num_workers": workers}
    data = build_task_data(d, np.arange(24), CPU, **kw)
    xb, _ = data.train.next()
    assert xb.shape == (4, 3, 32, 32)
    state = data.train.state_dict()
    want = [data.train.next() for _ in range(7)]  # crosses an epoch boundary (24 // 4 = 6 per epoch)
    again = build_task_data(d, np.arange(24), CPU, **kw)
    again.train.load_state_dict(state)
    for (xa, ya), (xc, yc) in zip(want, [again.train.next() for _ in range(7)], strict=True):
        assert torch.equal(xa, xc) and torch.equal(ya, yc)
    # the test pass: the stored image itself (256² in real data, no centre crop), in order
    xt = torch.cat([x for x, _ in data.test.iterate(5)])
    assert xt.shape == (8, 3, 40, 40)
    assert torch.equal(xt[3], normalise(torch.as_tensor(pixels[("test", 3)]).permute(2, 0, 1)[None])[0])
