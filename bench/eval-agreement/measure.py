"""Top-1 agreement between torchvision's evaluation transform and @tl/train's on photos of many
sizes, with the same pretrained network (the CIFAR-10 ResNet-20 in PyTorch, so only the
preprocessing differs).

No ImageNet weights are available here, so the photos are the 2,000 CIFAR-10 test JPEGs of
../shared/data (or the 500 of data/), each enlarged by Pillow's Lanczos filter to a seeded size
(shorter side 72-200 px, aspect 1-1.6, portrait or landscape) and saved as JPEG (quality 90):
real photo content, every image a different size, so every image is shrunk by the transform.

Run from the repository root after `pnpm --filter @tl/train build`:
  /usr/bin/python3 bench/eval-agreement/measure.py [--data ../shared/data/cifar10-test]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "packages", "models", "fixtures"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "fixtures"))
from make_cifar_fixtures import CLASSES, pretrained  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MODES = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


def photos(src, dst):
    rng = np.random.default_rng(0)
    files, labels = [], []
    for c, name in enumerate(CLASSES):
        os.makedirs(os.path.join(dst, name), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(src, name))):
            img = Image.open(os.path.join(src, name, f)).convert("RGB")
            short = int(rng.integers(72, 201))
            long_ = int(short * rng.uniform(1.0, 1.6))
            size = (long_, short) if rng.random() < 0.5 else (short, long_)
            out = os.path.join(dst, name, f)
            img.resize(size, Image.LANCZOS).save(out, quality=90)
            files.append(out)
            labels.append(c)
    return files, torch.tensor(labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "..", "shared", "data", "cifar10-test"))
    args = ap.parse_args()
    if not os.path.isdir(args.data):
        args.data = os.path.join(HERE, "..", "..", "data", "cifar10-test")
    model = pretrained(20)
    with tempfile.TemporaryDirectory() as tmp:
        files, labels = photos(args.data, tmp)
        with open(os.path.join(tmp, "files.json"), "w") as f:
            json.dump(files, f)
        print(f"{len(files)} photos from {os.path.relpath(args.data)}, shorter sides 72-200 px")
        print("| input | cropPct | interpolation | pipeline | max abs diff vs torchvision (normalised) | values off by 2+ levels of 255 | top-1 agreement | accuracy |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        # The network's own preprocessing (cropPct 1, bilinear), then a crop and bicubic, and an
        # input twice the training size (the network is fully convolutional; accuracy drops).
        for size, crop_pct, interp in [(32, 1.0, "bilinear"), (32, 0.875, "bicubic"), (64, 0.875, "bilinear")]:
            tf = T.Compose([T.Resize(math.floor(size / crop_pct + 1e-6), interpolation=MODES[interp]), T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD)])
            ref = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
            prefix = os.path.join(tmp, f"x{size}")
            subprocess.run(["node", os.path.join(HERE, "preprocess.mjs"), os.path.join(tmp, "files.json"), str(size), str(crop_pct), interp, prefix], check=True, stdout=subprocess.DEVNULL)
            with torch.no_grad():
                want = model(ref).argmax(1)
                print(f"| {size} | {crop_pct} | {interp} | torchvision | 0 | 0 | 100 % | {100 * float((want == labels).float().mean()):.2f} % |")
                for name in ["tl", "sharp", "old"]:
                    x = torch.from_numpy(np.fromfile(f"{prefix}.{name}.f32", dtype=np.float32)).view(ref.shape)
                    got = model(x).argmax(1)
                    diff = (x - ref).abs()
                    # One 8-bit level is 1/255 before normalisation, about 0.0175 after (std 0.224).
                    off = (diff * torch.tensor(STD).view(1, 3, 1, 1) > 1.5 / 255).float().mean()
                    agree = int((got == want).sum())
                    print(f"| {size} | {crop_pct} | {interp} | {name} | {float(diff.max()):.4f} | {100 * float(off):.3f} % | {100 * agree / len(files):.2f} % ({agree}/{len(files)}) | {100 * float((got == labels).float().mean()):.2f} % |")


if __name__ == "__main__":
    main()
