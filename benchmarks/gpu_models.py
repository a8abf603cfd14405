"""More real models through ``torch.compile(backend="aotgraph")`` with Inductor on the GPU:
one bf16-autocast training step each, loss and gradients compared with eager's (relative
error of the loss, largest relative error over the gradients) and with torch.compile's own
distance from eager on the same step. Prints one line per model, a table last.

    PYTHONPATH=src python benchmarks/gpu_models.py [--models resnet18 mobilenet_v3_small ...]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import traceback

import torch
import torch.nn.functional as F

import aotgraph

MODELS = {
    "resnet18": lambda: __import__("torchvision").models.resnet18(),
    "mobilenet_v3_small": lambda: __import__("torchvision").models.mobilenet_v3_small(),
    "efficientnet_b0": lambda: __import__("torchvision").models.efficientnet_b0(),
    "vit_tiny": lambda: __import__("timm").create_model("vit_tiny_patch16_224"),
    "convnext_atto": lambda: __import__("timm").create_model("convnext_atto"),
}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def one_step(model, images, labels):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(images), labels)
    loss.backward()
    return loss.detach().float(), [p.grad for p in model.parameters()]


def errors(reference, other) -> tuple[float, float]:
    loss_error = relative(other[0], reference[0])
    grad_error = max((relative(g, r) for g, r in zip(other[1], reference[1]) if r is not None and g is not None),
                     default=0.0)
    return loss_error, grad_error


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        torch._dynamo.reset()
        torch.manual_seed(0)
        try:
            base = MODELS[name]().cuda().to(memory_format=torch.channels_last)
            images = torch.randn(args.batch, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
            labels = torch.randint(0, 1000, (args.batch,), device="cuda")
            reference = one_step(copy.deepcopy(base), images, labels)
            begin = time.perf_counter()
            ours = one_step(torch.compile(copy.deepcopy(base), backend=aotgraph.backend(compiler="inductor")),
                            images, labels)
            ours_s = time.perf_counter() - begin
            torch._dynamo.reset()
            theirs = one_step(torch.compile(copy.deepcopy(base), backend="inductor"), images, labels)
            row = (name, *errors(reference, ours), *errors(reference, theirs), ours_s, "ok")
        except Exception as error:  # one model's failure still runs the others
            traceback.print_exc()
            row = (name, float("nan"), float("nan"), float("nan"), float("nan"), 0.0,
                   f"{type(error).__name__}: {str(error)[:150]}")
        print(row, flush=True)
        rows.append(row)
    print(f"\n{'model':<20} {'loss err ours':>13} {'grad err ours':>13} {'loss err torch':>14} {'grad err torch':>14}"
          f" {'first s':>8}  status")
    for name, lo, go, lt, gt, seconds, status in rows:
        print(f"{name:<20} {lo:13.2e} {go:13.2e} {lt:14.2e} {gt:14.2e} {seconds:8.1f}  {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
