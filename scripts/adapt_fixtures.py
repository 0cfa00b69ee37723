"""PyTorch references of domain adaptation and distillation, for packages/train/test:
AdaBN (BatchNorm statistics re-estimated with momentum=None), Deep CORAL's loss and
gradients, and Hinton's distillation loss as KLDivLoss(reduction='batchmean') blended with
cross-entropy. Run with /usr/bin/python3 (torch 1.13) from the repository root."""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
from safetensors_write import save  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "packages", "train", "test", "fixtures")


class BnNet(nn.Module):
    """Two conv + BatchNorm stages with dropout between them: dropout must stay in eval while
    the BatchNorms re-estimate, or the second one sees dropped activations."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.drop(F.relu(self.bn1(self.conv1(x))))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def adabn():
    torch.manual_seed(0)
    net = BnNet()
    for bn in (net.bn1, net.bn2):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # Target data with another mean and scale than whatever the stats above describe.
    x = torch.randn(11, 3, 8, 8) * 1.7 + 0.4
    batch = 4
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            net(x[s:s + batch])
    net.eval()
    with torch.no_grad():
        y = net(x)
    t = {f"before.{k}": v for k, v in before.items()}
    t.update({f"after.{k}": v for k, v in net.state_dict().items()})
    t["x"] = x
    t["y"] = y
    save(os.path.join(OUT, "adabn.safetensors"), t, {"batch": batch})


def coral():
    torch.manual_seed(1)
    s = (torch.randn(9, 5) * 1.3 + 0.2).requires_grad_()
    t = (torch.randn(7, 5) @ torch.randn(5, 5) * 0.6).requires_grad_()
    d = s.shape[1]

    def cov(m):
        n = m.shape[0]
        ones = torch.ones(1, n)
        return (m.t() @ m - (ones @ m).t() @ (ones @ m) / n) / (n - 1)

    loss = ((cov(s) - cov(t)) ** 2).sum() / (4 * d * d)
    loss.backward()
    save(os.path.join(OUT, "coral.safetensors"), {"source": s, "target": t, "loss": loss.reshape(1), "grad.source": s.grad, "grad.target": t.grad})


def distill():
    torch.manual_seed(2)
    s = (torch.randn(6, 5) * 2).requires_grad_()
    teacher = torch.randn(6, 5) * 3
    y = torch.tensor([0, 3, 1, 4, 2, 3])
    out = {"student": s.detach().clone(), "teacher": teacher, "y": y.to(torch.int32)}
    cases = []
    for temperature, alpha in [(4.0, 0.5), (2.0, 0.9), (1.0, 1.0)]:
        s.grad = None
        kl = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / temperature, 1), F.softmax(teacher / temperature, 1))
        loss = alpha * kl * temperature ** 2 + (1 - alpha) * F.cross_entropy(s, y)
        loss.backward()
        k = len(cases)
        out[f"loss{k}"] = loss.detach().reshape(1)
        out[f"grad{k}"] = s.grad.clone()
        cases.append({"temperature": temperature, "alpha": alpha})
    save(os.path.join(OUT, "distill.safetensors"), out, {"cases": json.dumps(cases)})


def corruptions():
    """CIFAR-10-C's gaussian_blur (skimage: scipy's gaussian_filter, mode 'nearest', truncate 4)
    and contrast at severities 3 and 5, on a small 8-bit HWC image, truncated to uint8."""
    g = torch.Generator().manual_seed(3)
    img = torch.randint(0, 256, (7, 6, 3), generator=g, dtype=torch.uint8)
    x = img.double() / 255
    out = {"image": img}
    for severity, sigma in [(3, 0.7), (5, 1.0)]:
        radius = int(4 * sigma + 0.5)
        k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
        k = k / k.sum()
        chw = x.permute(2, 0, 1).unsqueeze(1)
        y = F.conv2d(F.pad(chw, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
        y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        out[f"blur{severity}"] = (y.squeeze(1).permute(1, 2, 0).clamp(0, 1) * 255).to(torch.uint8)
    for severity, c in [(3, 0.4), (5, 0.15)]:
        means = x.mean(dim=(0, 1), keepdim=True)
        out[f"contrast{severity}"] = (((x - means) * c + means).clamp(0, 1) * 255).to(torch.uint8)
    save(os.path.join(OUT, "corruptions.safetensors"), out)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    adabn()
    coral()
    distill()
    corruptions()
