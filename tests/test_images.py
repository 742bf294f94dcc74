"""The image-classification workload on real data: scikit-learn's digits, torchvision's FakeData and PNG folders
written here. Nothing is downloaded; CIFAR-10 is only exercised where it is missing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from autoaccel.errors import ConfigError, DataError
from autoaccel.workloads import WORKLOADS, get_workload
from autoaccel.workloads.images import ImageClassification

CPU = torch.device("cpu")
ALL_METRICS = {"val_loss", "val_accuracy", "val_top5"}


@pytest.fixture(scope="module")
def digits() -> ImageClassification:
    workload = ImageClassification()  # resnet20 on digits: the defaults
    workload.setup(CPU)
    return workload


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def write_image_folder(root, classes=("cat", "dog", "owl"), counts=(("train", 4), ("val", 2)), size=(20, 12)):
    """PNG files in ImageFolder's layout; each class has its own dominant colour (so a step has signal)."""
    rng = np.random.default_rng(0)
    for split, count in counts:
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (size[1], size[0], 3), dtype=np.uint8)
                pixels[..., label % 3] += 150
                Image.fromarray(pixels).save(folder / f"{i}.png")


def take_step(workload, model, batch, lr=0.05) -> float:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    loss = workload.loss(model, batch)
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    return loss.item()


# ---- training and evaluation ------------------------------------------------------------------------------------


def test_resnet20_learns_digits_in_one_epoch(digits):
    assert digits.train_size() == 1438  # 1797 digits, 359 (20%) held out
    torch.manual_seed(0)
    model = digits.model()
    before = digits.evaluate(model)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    steps = 0
    for batch in digits.batches(64, generator(0)):
        opt.zero_grad()
        digits.loss(model, batch).backward()
        opt.step()
        steps += 1
    assert steps == digits.steps_per_epoch(64) == 23
    after = digits.evaluate(model)
    assert set(before) == set(after) == ALL_METRICS == set(digits.metrics)
    assert before["val_accuracy"] < 0.3  # ten classes, untrained
    assert after["val_accuracy"] > 0.8, after
    assert after["val_loss"] < before["val_loss"]
    assert all(isinstance(v, float) for v in after.values())


def test_evaluate_is_batched_and_restores_the_mode(digits):
    torch.manual_seed(1)
    model = digits.model()
    whole = digits.evaluate(model)  # eval_batch_size 500 > 359: one batch
    chunked = ImageClassification()
    chunked.setup(CPU)
    chunked.eval_batch_size = 50  # eight batches, the last of 9
    pieces = chunked.evaluate(model)
    assert pieces["val_accuracy"] == whole["val_accuracy"] and pieces["val_top5"] == whole["val_top5"]
    assert math.isclose(pieces["val_loss"], whole["val_loss"], rel_tol=1e-5)
    assert model.training  # evaluate() switched to eval mode and back
    assert 0.0 <= whole["val_accuracy"] <= whole["val_top5"] <= 1.0


def test_split_halves_average_to_the_batch_loss(digits):
    torch.manual_seed(0)
    # Eval mode: batch norm's batch statistics would otherwise make an example's loss depend on its micro-batch.
    model = digits.model().eval()
    batch = next(digits.batches(64, generator(3)))
    halves = digits.split(batch, 2)
    assert [len(h[0]) for h in halves] == [32, 32]
    with torch.no_grad():
        whole = digits.loss(model, batch)
        parts = torch.stack([digits.loss(model, half) for half in halves])
    torch.testing.assert_close(parts.mean(), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "count"),
    [("resnet20", 269_722), ("resnet32", 464_154)],  # He et al. 2016, Table 6: 0.27M and 0.46M
)
def test_cifar_resnets_have_the_papers_sizes(name, count):
    model = ImageClassification(model=name, dataset="cifar10").model()  # CIFAR-10 fixes 3 channels, 10 classes
    assert sum(p.numel() for p in model.parameters()) == count
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(weighted) == int(name[-2:])  # 6n + 2 layers; option-A shortcuts add no convolution
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "stem"), [("resnet32", "auto"), ("resnet18", "auto"), ("resnet18", "imagenet"), ("resnet50", "auto")]
)
def test_every_model_trains_on_8x8_digits(name, stem):
    workload = ImageClassification(model=name, stem=stem)
    workload.setup(CPU)
    torch.manual_seed(0)
    model = workload.model()
    batch = next(workload.batches(4, generator(0)))
    assert batch[0].shape == (4, 1, 8, 8)
    assert math.isfinite(take_step(workload, model, batch))
    assert model(batch[0]).shape == (4, 10)


def test_fake_resnet18_step_and_every_metric():
    workload = get_workload("image_classification", model="resnet18", dataset="fake", image_size=16)
    workload.setup(CPU)
    assert workload.train_size() == 256
    torch.manual_seed(0)
    model = workload.model()
    images, labels = batch = next(workload.batches(8, generator(0)))
    assert images.shape == (8, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert math.isfinite(take_step(workload, model, batch))
    metrics = workload.evaluate(model)
    assert set(metrics) == set(workload.metrics) == ALL_METRICS
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert 0.0 <= metrics["val_accuracy"] <= metrics["val_top5"] <= 1.0


def test_fake_with_few_classes_reports_no_top5():
    workload = ImageClassification(dataset="fake", num_classes=3, image_size=8)
    assert workload.metrics == ("val_loss", "val_accuracy")
    assert ImageClassification.metrics == ("val_loss", "val_accuracy", "val_top5")  # the class lists every name
    workload.setup(CPU)
    torch.manual_seed(0)
    model = workload.model()
    assert set(workload.evaluate(model)) == {"val_loss", "val_accuracy"}
    assert int(next(workload.batches(256, generator(0)))[1].max()) <= 2


# ---- determinism ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"dataset": "digits"}, {"dataset": "fake", "image_size": 16}])
def test_batches_depend_on_the_generator_alone(options):
    workload = ImageClassification(augment=True, **options)  # order and augmentation
    workload.setup(CPU)
    first, second = generator(7), torch.Generator()
    second.set_state(first.get_state())  # what restoring a checkpoint does
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = list(workload.batches(50, first))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never drawn from
    torch.manual_seed(123)  # nor read: a different global state changes nothing
    b = list(workload.batches(50, second))
    assert len(a) == len(b) == workload.steps_per_epoch(50)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    c = next(workload.batches(50, generator(8)))
    assert not torch.equal(a[0][0], c[0])


def test_augmentation_is_a_padded_crop_with_flip():
    """Each augmented image is the original shifted by at most side/8 (zeros entering) and maybe mirrored."""
    plain = ImageClassification(dataset="fake", image_size=16, augment=False)
    augmented = ImageClassification(dataset="fake", image_size=16, augment=True)
    for w in (plain, augmented):
        w.setup(CPU)
    # The order is drawn first from the generator, so both see the same images in the same order.
    (x, y), (xa, ya) = (next(w.batches(40, generator(5))) for w in (plain, augmented))
    assert torch.equal(y, ya)
    pad, side = 2, 16
    moved = flipped = 0
    for original, image in zip(x, xa, strict=True):
        found = None
        for mirror in (False, True):
            source = original.flip(-1) if mirror else original
            for dy in range(-pad, pad + 1):
                for dx in range(-pad, pad + 1):
                    # Output pixel (i, j) reads source pixel (i + dy, j + dx) where that lies inside the image.
                    out = image[:, max(0, -dy) : side - max(0, dy), max(0, -dx) : side - max(0, dx)]
                    src = source[:, max(0, dy) : side - max(0, -dy), max(0, dx) : side - max(0, -dx)]
                    if torch.equal(out, src):
                        found = (mirror, dy, dx)
                        break
                if found:
                    break
            if found:
                break
        assert found is not None
        flipped += found[0]
        moved += found[1:] != (0, 0)
    assert 10 < flipped < 30 and moved > 20  # 40 images: about half mirrored, 24/25 shifted


def test_imagefolder_batches_are_reproducible_with_workers(tmp_path):
    write_image_folder(tmp_path)
    workload = ImageClassification(dataset="imagefolder", data_dir=str(tmp_path), image_size=8, num_workers=1)
    workload.setup(CPU)
    first, second = generator(11), torch.Generator()
    second.set_state(first.get_state())
    a, b = (list(workload.batches(5, g)) for g in (first, second))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, workload.batches(5, generator(12)), strict=True))


# ---- image folders and missing data -----------------------------------------------------------------------------


def test_imagefolder_of_pngs_trains_a_step(tmp_path):
    write_image_folder(tmp_path)
    workload = ImageClassification(dataset="imagefolder", data_dir=str(tmp_path), image_size=8, num_workers=0)
    assert workload.augment  # imagefolder's default
    workload.setup(CPU)
    assert workload.train_size() == 12
    torch.manual_seed(0)
    model = workload.model()
    assert model.fc.out_features == 3  # from the folders: cat, dog, owl
    batches = list(workload.batches(5, generator(0)))
    assert [len(y) for _, y in batches] == [5, 5, 2]
    assert batches[0][0].shape == (5, 3, 8, 8) and batches[0][0].dtype == torch.float32
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert math.isfinite(take_step(workload, model, batches[0]))
    metrics = workload.evaluate(model)
    assert set(metrics) == ALL_METRICS  # fixed before the folder is read; top-5 of 3 classes is 1
    assert metrics["val_top5"] == 1.0


def test_imagefolder_layout_errors_name_data_dir(tmp_path):
    with pytest.raises(DataError, match=r"workload\.data_dir.*no train/ or val/"):
        ImageClassification(dataset="imagefolder", data_dir=str(tmp_path)).setup(CPU)
    write_image_folder(tmp_path / "a", classes=("cat", "dog"), counts=(("train", 1),))
    write_image_folder(tmp_path / "a", classes=("cat", "owl"), counts=(("val", 1),))
    with pytest.raises(DataError, match=r"workload\.data_dir.*classes \['cat', 'dog'\].*\['cat', 'owl'\]"):
        ImageClassification(dataset="imagefolder", data_dir=str(tmp_path / "a")).setup(CPU)
    with pytest.raises(RuntimeError, match="setup"):  # the class count is only known from the folders
        ImageClassification(dataset="imagefolder", data_dir=str(tmp_path)).model()


def test_missing_cifar10_without_download_says_how_to_get_it(tmp_path):
    where = tmp_path / "data"
    workload = ImageClassification(dataset="cifar10", data_dir=str(where))  # construction reads nothing
    with pytest.raises(DataError, match=r"workload\.data_dir = .*data'.*workload\.download=true"):
        workload.setup(CPU)
    assert not where.exists()
    (where / "cifar-10-batches-py").mkdir(parents=True)  # present but empty: torchvision's checksums fail
    with pytest.raises(DataError, match=r"corrupted.*workload\.download=true"):
        workload.setup(CPU)


# ---- options ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"model": "resnet99"}, "workload.model"),
        ({"dataset": "mnist"}, "workload.dataset"),
        ({"image_size": 16}, "workload.image_size"),  # digits are 8×8
        ({"dataset": "cifar10", "num_classes": 5}, "workload.num_classes"),
        ({"model": "resnet32", "stem": "cifar"}, "workload.stem"),
        ({"stem": "tiny"}, "workload.stem"),
        ({"num_workers": -1}, "workload.num_workers"),
        ({"augment": "yes"}, "workload.augment"),
        ({"target": 1.5}, "workload.target"),
        ({"data_dir": " "}, "workload.data_dir"),
        ({"batch": 3}, "workload.batch"),
    ],
)
def test_bad_options_name_their_key(options, key):
    with pytest.raises(ConfigError) as info:
        get_workload("image_classification", **options)
    assert info.value.key == key
    assert key in str(info.value) and repr(next(iter(options.values()))) in str(info.value)


def test_registry_targets_and_data_folder(monkeypatch, tmp_path):
    assert WORKLOADS["image_classification"] is ImageClassification
    assert ImageClassification().target == 0.95
    assert ImageClassification(dataset="cifar10", model="resnet32").target == 0.90
    assert ImageClassification(dataset="fake", target=0.2).target == 0.2
    assert not ImageClassification().augment and ImageClassification(dataset="cifar10").augment
    monkeypatch.delenv("AUTOACCEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ImageClassification(dataset="cifar10").data_path() == tmp_path / "autoaccel" / "data"
    assert ImageClassification(data_dir="~/x").data_path().is_absolute()
