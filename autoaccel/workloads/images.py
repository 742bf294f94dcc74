"""Image classification with residual networks: the CIFAR-10 ResNets of AdaHessian's experiments and torchvision's.

Models (option ``model``):

- ``resnet20``, ``resnet32``: the CIFAR ResNets of He et al., "Deep Residual Learning for Image Recognition" (CVPR
  2016), §4.2, with option-A (parameter-free, zero-padding) shortcuts: 0.27M and 0.46M parameters for ten classes.
  They are the models of the CIFAR-10 experiments of Yao et al., "ADAHESSIAN: An Adaptive Second Order Optimizer for
  Machine Learning" (AAAI 2021), which reports 92.1% (ResNet-20) and 93.1% (ResNet-32) top-1. See
  :mod:`autoaccel.workloads.resnet_cifar`.
- ``resnet18``, ``resnet50``: torchvision's ImageNet ResNets (He et al. 2016, Table 1), untrained (``weights=None``)
  with ``num_classes`` set. Their stem (7×7 stride-2 convolution and max-pool) divides the side by 4 before the
  first stage, which on 32×32 CIFAR images leaves 1×1 maps in the last stage; option ``stem`` swaps it for a 3×3
  stride-1 convolution without pooling, by default for images under 64 pixels (the usual CIFAR adaptation).

Datasets (option ``dataset``):

- ``digits``: scikit-learn's ``load_digits``, the 1797 8×8 grayscale handwritten digits (16 grey levels) of the UCI
  "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak, 1998). It ships with scikit-learn, so it
  needs no download; a seeded 80/20 train/validation split (``data_seed``). The default: real data, CPU-sized.
- ``cifar10``: CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009) via torchvision,
  50 000 training and 10 000 test (used as validation) 32×32 colour images in ten classes, from ``data_dir``.
- ``imagefolder``: any ``data_dir/train`` and ``data_dir/val`` in torchvision's ``ImageFolder`` layout (one folder
  of images per class), resized on the short side to ``image_size`` then centre-cropped, read by a ``DataLoader``.
- ``fake``: torchvision's ``FakeData``, 256 training and 64 validation noise images with random labels, fixed by
  ``data_seed``: a smoke test of the plumbing, nothing to learn.

digits, cifar10 and fake live on the device as uint8 tensors (CIFAR-10's training set is 150 MB) and are batched by
index (:class:`InMemoryBatches`): per-image PIL transforms in DataLoader workers dominate the step time of these
small images, and tensor augmentation on the device draws from the epoch's generator, which exact resume needs.

Augmentation (option ``augment``) is the CIFAR recipe of He et al. §4.2: zero-pad by an eighth of the side (4 pixels
at 32), take a random crop of the original size, flip horizontally with probability ½. Digits are not flipped (a
mirrored digit is another glyph). It runs on whole batches on the device for every dataset, imagefolder included,
with every random number drawn from the ``generator`` passed to :meth:`ImageClassification.batches`, never from
the global RNG.

Normalisation is per channel: the statistics of the training split for digits and fake, the published CIFAR-10
training-set statistics for cifar10, the ImageNet ones for imagefolder.

Targets (``val_accuracy``; option ``target`` overrides): digits 0.95; cifar10 0.90, a little under what every model
here reaches with a standard schedule (AdaHessian's 92–93% for ResNet-20/32); imagefolder 1.0 since nothing is known
about the data (set ``target``); fake 1.0, unreachable on random labels (smoke tests only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from autoaccel.config import Hyperparameter
from autoaccel.errors import DataError

from ._base import InMemoryBatches, Workload
from ._cache import cache_dir
from .resnet_cifar import resnet20, resnet32

__all__ = ["ImageClassification"]

_CIFAR_MODELS = ("resnet20", "resnet32")
_TORCHVISION_MODELS = ("resnet18", "resnet50")
_DATASETS = ("digits", "cifar10", "imagefolder", "fake")

# Per-channel mean and standard deviation over all pixels of CIFAR-10's 50 000 training images, in [0, 1] units
# (the widely copied standard deviations (0.2023, 0.1994, 0.2010) do not match the data).
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# ImageNet's, as torchvision's pretrained models use them: the best prior for an unknown folder of photographs.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_TARGETS = {"digits": 0.95, "cifar10": 0.90, "imagefolder": 1.0, "fake": 1.0}
_FAKE_TRAIN, _FAKE_VAL = 256, 64
_DIGITS_VAL_FRACTION = 0.2
_IMAGEFOLDER_LAYOUT = "needs train/ and val/, each with one folder of images per class (torchvision's ImageFolder)"
_SMALL_IMAGE = 64  # stem="auto" uses the CIFAR stem below this side


@dataclass
class _Data:
    """What :meth:`ImageClassification.setup` loaded: uint8 images (raw pixel units) and int64 labels."""

    train: InMemoryBatches | Dataset
    val: tuple[torch.Tensor, torch.Tensor] | Dataset
    mean: torch.Tensor  # (1, C, 1, 1) on the device, raw pixel units
    std: torch.Tensor
    num_classes: int
    device: torch.device


class _Metrics:
    """``metrics``: on an instance, what its :meth:`~ImageClassification.evaluate` returns (top-5 only for ≥ 10
    classes); on the class, every name it may return (for listings that never build a workload)."""

    def __get__(self, obj: ImageClassification | None, owner: type | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("val_loss", "val_accuracy", "val_top5")
        return obj._metric_names()


class ImageClassification(Workload):
    """Train a ResNet on an image dataset; the primary metric is top-1 validation accuracy (see the module doc)."""

    name = "image_classification"
    task = "classification"
    summary = "ResNet-20/32 (CIFAR) or ResNet-18/50 (torchvision) on digits, CIFAR-10, an image folder or fake data"
    metric = "val_accuracy"
    mode = "max"
    metrics = _Metrics()
    default_batch_size = 128  # He et al.'s CIFAR batch
    eval_batch_size = 500  # bounds evaluation memory; an instance may lower it

    options = (
        Hyperparameter(
            "model",
            str,
            "resnet20",
            "resnet20/resnet32: CIFAR ResNets of He et al. 2016 §4.2 (option-A shortcuts, 0.27M/0.46M parameters); "
            "resnet18/resnet50: torchvision's, untrained",
            choices=_CIFAR_MODELS + _TORCHVISION_MODELS,
        ),
        Hyperparameter(
            "dataset",
            str,
            "digits",
            "digits: scikit-learn's 1797 8×8 handwritten digits (no download); cifar10: torchvision CIFAR-10 in "
            "data_dir; imagefolder: data_dir/train and data_dir/val class folders; fake: torchvision FakeData noise",
            choices=_DATASETS,
        ),
        Hyperparameter(
            "data_dir",
            str,
            None,
            "folder of cifar10 (downloaded there with download=true) or of imagefolder's train/ and val/; null: data/ "
            "in $AUTOACCEL_CACHE, else $XDG_CACHE_HOME/autoaccel, else ~/.cache/autoaccel",
            nullable=True,
        ),
        Hyperparameter("download", bool, False, "cifar10: download it into data_dir when it is not there"),
        Hyperparameter(
            "augment",
            bool,
            None,
            "random crop after zero-padding by 1/8 of the side, and horizontal flip (not for digits); null: on for "
            "cifar10 and imagefolder, off for digits and fake",
            nullable=True,
        ),
        Hyperparameter("num_workers", int, 2, "imagefolder: DataLoader worker processes (others are in memory)", low=0),
        Hyperparameter(
            "image_size",
            int,
            None,
            "imagefolder and fake: image side in pixels (imagefolder resizes the short side, then centre-crops); "
            "null: 224 for imagefolder, 32 for fake",
            low=4,
            nullable=True,
        ),
        Hyperparameter("num_classes", int, None, "fake: number of classes; null: 10", low=2, nullable=True),
        Hyperparameter(
            "stem",
            str,
            "auto",
            "resnet18/resnet50 input layers: imagenet (7×7 stride-2 convolution, max-pool), cifar (3×3 stride-1 "
            f"convolution, no pool), auto: cifar for images under {_SMALL_IMAGE} pixels",
            choices=("auto", "imagenet", "cifar"),
        ),
        Hyperparameter("data_seed", int, 0, "seed of the digits train/validation split and of the fake data", low=0),
        Hyperparameter(
            "target",
            float,
            None,
            "val_accuracy that counts as reached; null: digits 0.95, cifar10 0.90, imagefolder and fake 1.0",
            low=0.0,
            high=1.0,
            low_open=True,
            nullable=True,
        ),
    )

    def __init__(self, **options: Any) -> None:
        self._data: _Data | None = None
        super().__init__(**options)

    # ---- options ------------------------------------------------------------------------------------------------

    def check_options(self) -> None:
        c = self.config
        if c["image_size"] is not None and c["dataset"] not in ("imagefolder", "fake"):
            raise self.option_error(
                "image_size",
                f"null for dataset {c['dataset']!r} (its images have a fixed size); set only for imagefolder or fake",
            )
        if c["num_classes"] is not None and c["dataset"] != "fake":
            raise self.option_error(
                "num_classes", f"null for dataset {c['dataset']!r} (the data fixes it); set only for fake"
            )
        if c["stem"] != "auto" and c["model"] in _CIFAR_MODELS:
            raise self.option_error("stem", f"'auto' for model {c['model']!r}; set only for resnet18 or resnet50")
        if c["data_dir"] is not None and not c["data_dir"].strip():
            raise self.option_error("data_dir", "a folder path, or null for the cache folder")

    @property
    def target(self) -> float:
        given = self.config["target"]
        return _TARGETS[self.config["dataset"]] if given is None else given

    @property
    def augment(self) -> bool:
        given = self.config["augment"]
        return self.config["dataset"] in ("cifar10", "imagefolder") if given is None else given

    def data_path(self) -> Path:
        """``data_dir``, or ``data`` in the project's cache folder (:func:`~autoaccel.workloads._cache.cache_dir`)."""
        if self.config["data_dir"] is not None:
            return Path(self.config["data_dir"]).expanduser()
        return cache_dir() / "data"

    def _known_classes(self) -> int | None:
        """The class count the options fix (None for imagefolder: only its folders tell)."""
        dataset = self.config["dataset"]
        if dataset == "fake":
            return self.config["num_classes"] or 10
        return None if dataset == "imagefolder" else 10

    def _metric_names(self) -> tuple[str, ...]:
        classes = self._known_classes()
        # imagefolder's count is unknown before setup, and the metric names must not change with it: always top-5.
        top5 = classes is None or classes >= 10
        return ("val_loss", "val_accuracy", "val_top5") if top5 else ("val_loss", "val_accuracy")

    def _in_channels(self) -> int:
        return 1 if self.config["dataset"] == "digits" else 3

    def _side(self) -> int:
        dataset = self.config["dataset"]
        fixed = {"digits": 8, "cifar10": 32}
        if dataset in fixed:
            return fixed[dataset]
        return self.config["image_size"] or (224 if dataset == "imagefolder" else 32)

    # ---- data ---------------------------------------------------------------------------------------------------

    def setup(self, device: torch.device) -> None:
        device = torch.device(device)
        super().setup(device)
        if self._data is not None and self._data.device == device:
            return
        load = {
            "digits": self._load_digits,
            "cifar10": self._load_cifar10,
            "imagefolder": self._load_imagefolder,
            "fake": self._load_fake,
        }[self.config["dataset"]]
        self._data = load(device)

    def _loaded(self) -> _Data:
        if self._data is None:
            raise RuntimeError("ImageClassification: call setup(device) before using the data")
        return self._data

    def _in_memory(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        classes: int,
        device: torch.device,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> _Data:
        """In-memory data on ``device``; statistics given in [0, 1] units (255 levels), else the training split's."""
        if mean is None or std is None:
            pixels = train[0].to(torch.float64)
            mean_t, std_t = pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3))
        else:
            mean_t, std_t = torch.tensor(mean) * 255, torch.tensor(std) * 255
        train_d, val_d = (tuple(t.to(device) for t in split) for split in (train, val))
        return _Data(
            train=InMemoryBatches(*train_d),
            val=val_d,
            mean=mean_t.to(device, torch.float32).view(1, -1, 1, 1),
            std=std_t.to(device, torch.float32).view(1, -1, 1, 1),
            num_classes=classes,
            device=device,
        )

    def _load_digits(self, device: torch.device) -> _Data:
        from sklearn.datasets import load_digits

        bunch = load_digits()  # images: float64 grey levels 0..16, exact in uint8
        images = torch.as_tensor(bunch.images).to(torch.uint8).unsqueeze(1)
        labels = torch.as_tensor(bunch.target, dtype=torch.int64)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.config["data_seed"]))
        n_val = round(_DIGITS_VAL_FRACTION * len(labels))
        val, train = order[:n_val], order[n_val:]
        # Statistics of the raw 0..16 levels: normalising in any units gives the same inputs.
        return self._in_memory((images[train], labels[train]), (images[val], labels[val]), 10, device)

    def check_data(self) -> None:
        """The folders a dataset on disk needs are there (CIFAR-10 unless it is to be downloaded; an image folder's
        train/ and val/)."""
        dataset, root = self.config["dataset"], self.data_path()
        where = f"workload.data_dir = {str(root)!r}"
        if dataset == "cifar10" and not self.config["download"]:
            from torchvision.datasets import CIFAR10

            if not (root / CIFAR10.base_folder).is_dir():
                raise DataError(
                    f"{where}: no CIFAR-10 there (no {CIFAR10.base_folder}/); pass workload.download=true to download"
                    " it (170 MB) into that folder, or set workload.data_dir to a folder that has it"
                )
        if dataset == "imagefolder":
            missing = [name for name in ("train", "val") if not (root / name).is_dir()]
            if missing:
                there = " or ".join(m + "/" for m in missing)
                raise DataError(f"{where}: no {there} there; dataset imagefolder {_IMAGEFOLDER_LAYOUT}")

    def _load_cifar10(self, device: torch.device) -> _Data:
        from torchvision.datasets import CIFAR10

        root, download = self.data_path(), self.config["download"]
        self.check_data()
        try:
            splits = [CIFAR10(str(root), train=train, download=download) for train in (True, False)]
        except RuntimeError as error:  # torchvision's "not found or corrupted" (checksums)
            raise DataError(
                f"workload.data_dir = {str(root)!r}: CIFAR-10 there is incomplete or corrupted ({error}); pass "
                "workload.download=true to fetch it again"
            ) from error

        def tensors(split: Any) -> tuple[torch.Tensor, torch.Tensor]:
            # torchvision keeps (N, 32, 32, 3) uint8; the models want channels first.
            images = torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous()
            return images, torch.as_tensor(split.targets, dtype=torch.int64)

        train, val = (tensors(s) for s in splits)
        return self._in_memory(train, val, 10, device, _CIFAR10_MEAN, _CIFAR10_STD)

    def _load_fake(self, device: torch.device) -> _Data:
        from torchvision.datasets import FakeData
        from torchvision.transforms import PILToTensor

        side, classes = self._side(), self._known_classes() or 10
        offset = self.config["data_seed"] * (_FAKE_TRAIN + _FAKE_VAL)  # FakeData seeds image i with i + offset
        splits = []
        # FakeData reseeds the global RNG per image and restores only the CPU state; keep the device's intact too.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for size, start in ((_FAKE_TRAIN, offset), (_FAKE_VAL, offset + _FAKE_TRAIN)):
                data = FakeData(size, (3, side, side), classes, transform=PILToTensor(), random_offset=start)
                items = [data[i] for i in range(size)]
                splits.append((torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])))
        return self._in_memory(splits[0], splits[1], classes, device)

    def _load_imagefolder(self, device: torch.device) -> _Data:
        from torchvision.datasets import ImageFolder
        from torchvision.transforms import CenterCrop, Compose, PILToTensor, Resize

        root = self.data_path()
        where = f"workload.data_dir = {str(root)!r}"
        self.check_data()
        side = self._side()
        # Deterministic per-image work only (decode, resize, crop): the random augmentation happens per batch on the
        # device, from the epoch's generator, so worker processes and their seeds play no part in it.
        transform = Compose([Resize(side), CenterCrop(side), PILToTensor()])
        try:
            train, val = (ImageFolder(str(root / name), transform=transform) for name in ("train", "val"))
        except FileNotFoundError as error:  # no class folders, or a class folder without images
            raise DataError(f"{where}: {error}; dataset imagefolder {_IMAGEFOLDER_LAYOUT}") from error
        if train.classes != val.classes:
            raise DataError(
                f"{where}: train/ has classes {train.classes} but val/ has {val.classes}; they must be the same"
            )
        return _Data(
            train=train,
            val=val,
            mean=torch.tensor(_IMAGENET_MEAN, device=device).mul(255).view(1, -1, 1, 1),
            std=torch.tensor(_IMAGENET_STD, device=device).mul(255).view(1, -1, 1, 1),
            num_classes=len(train.classes),
            device=device,
        )

    def _loader(self, dataset: Dataset, batch_size: int, generator: torch.Generator | None) -> Iterator[Any]:
        """Batches of a disk dataset on the device; shuffled from ``generator`` (which also seeds the workers)."""
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=generator is not None,
            generator=generator,
            num_workers=self.config["num_workers"],
            pin_memory=cuda,
            persistent_workers=False,
        )
        for images, labels in loader:
            yield images.to(self.device, non_blocking=cuda), labels.to(self.device, non_blocking=cuda)

    def train_size(self) -> int:
        train = self._loaded().train
        return len(train)  # type: ignore[arg-type]

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data = self._loaded()
        if isinstance(data.train, InMemoryBatches):
            raw = data.train(batch_size, generator)
        else:
            raw = self._loader(data.train, batch_size, generator)
        # The order is drawn (first next()) before any augmentation draw, so the generator's sequence is fixed.
        for images, labels in raw:
            if self.augment:
                images = self._augment(images, generator)
            yield self._normalise(images), labels

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Pad-and-crop plus flip of a uint8 batch, as one gather; the random numbers come from ``generator``."""
        n, _, h, w = images.shape
        pad = max(1, min(h, w) // 8)
        flip = self.config["dataset"] != "digits"
        shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(images.device)
        rows = shifts[0, :, None] + torch.arange(h, device=images.device)  # (n, h) rows of the padded image
        columns = torch.arange(w, device=images.device).expand(n, w)
        if flip:
            flipped = (torch.rand(n, generator=generator) < 0.5).to(images.device)
            # A mirrored crop reads the crop's columns right to left: one gather does both.
            columns = torch.where(flipped[:, None], columns.flip(1), columns)
        columns = shifts[1, :, None] + columns
        padded = F.pad(images, (pad, pad, pad, pad))  # zeros, i.e. black, before normalisation as in He et al.
        batch = torch.arange(n, device=images.device)[:, None, None]
        # Advanced indices around a slice put their broadcast shape first: (n, h, w, C).
        out = padded[batch, :, rows[:, :, None], columns[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        data = self._loaded()
        return (images.float() - data.mean) / data.std

    # ---- model, loss, evaluation --------------------------------------------------------------------------------

    def model(self) -> nn.Module:
        """A fresh ``model`` for this dataset's channels and classes, on the device given to :meth:`setup`."""
        classes = self._known_classes()
        if classes is None:
            classes = self._loaded().num_classes
        name, channels = self.config["model"], self._in_channels()
        if name in _CIFAR_MODELS:
            net: nn.Module = (resnet20 if name == "resnet20" else resnet32)(classes, channels)
        else:
            import torchvision

            net = getattr(torchvision.models, name)(weights=None, num_classes=classes)
            stem = self.config["stem"]
            if stem == "auto":
                stem = "cifar" if self._side() < _SMALL_IMAGE else "imagenet"
            if stem == "cifar":
                net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
                net.maxpool = nn.Identity()
            elif channels != 3:
                net.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
            # torchvision's own initialisation of its convolutions, for the replaced one.
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        return net.to(self.device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels)

    def _val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data = self._loaded()
        if isinstance(data.val, tuple):
            images, labels = data.val
            yield from zip(images.split(self.eval_batch_size), labels.split(self.eval_batch_size), strict=True)
        else:
            yield from self._loader(data.val, self.eval_batch_size, None)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean cross-entropy, top-1 and (≥ 10 classes, or imagefolder) top-5 accuracy on the validation split."""
        data = self._loaded()
        names = self._metric_names()
        k = min(5, data.num_classes)
        was_training = model.training
        model.eval()
        # Sums stay on the device until the end: one synchronisation per evaluation, not per batch.
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        top1 = torch.zeros((), dtype=torch.int64, device=self.device)
        topk = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        try:
            with torch.no_grad():
                for images, labels in self._val_batches():
                    logits = model(self._normalise(images))
                    loss += F.cross_entropy(logits.float(), labels, reduction="sum").double()
                    hits = logits.topk(k, dim=1).indices == labels[:, None]
                    top1 += hits[:, 0].sum()
                    topk += hits.any(dim=1).sum()
                    count += len(labels)
        finally:
            model.train(was_training)
        results = {"val_loss": loss.item() / count, "val_accuracy": top1.item() / count}
        if "val_top5" in names:
            results["val_top5"] = topk.item() / count
        return results
