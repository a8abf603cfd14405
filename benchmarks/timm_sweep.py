"""Training parity of timm's image models through ``aotgraph.aot_module``, against eager.

Each model is built without pretrained weights (5 classes, dropout and drop-path 0, a small
input where the model takes one) and trained for 3 SGD steps eagerly and through
``aot_module(model, compiler)`` from identical deep copies, each step from the same state
(eager's parameters and buffers copied to the others first); the loss, every parameter's
gradient and the buffers (BatchNorm's running statistics) are compared; a gradient beyond the
tolerance is measured against a float64 copy's step (see `compare`). With ``--dynamic`` the compiled
copy is ``aot_module(..., dynamic=True)`` and a second phase changes the batch size (and the
resolution where the model takes any), checks each call against eager and counts compiles.

    python benchmarks/timm_sweep.py                         # the whole list, eager compiler
    python benchmarks/timm_sweep.py resnet vit_tiny         # models whose name starts with these
    python benchmarks/timm_sweep.py --dynamic               # symbolic sizes, changing shapes
    python benchmarks/timm_sweep.py --compiler inductor     # Inductor on the CPU
    python benchmarks/timm_sweep.py --device cuda           # on a GPU (float32; TF32 off)

Needs ``timm`` (and torchvision); the table printed last has one row per model: status (ok /
mismatch / error and its first line), the largest gradient error relative to that gradient's
largest magnitude, and the number of compiles.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import traceback

os.environ.setdefault("AOTGRAPH_CACHE_DIR", tempfile.mkdtemp(prefix="aotgraph_timm_sweep_"))
os.environ.setdefault("AOTGRAPH_PROGRESS", "0")

import torch  # noqa: E402
import timm  # noqa: E402

import aotgraph  # noqa: E402

RTOL = 1e-4  # of a tensor's largest magnitude
ATOL = 1e-6  # below this distance from float64 (of the model's largest gradient, for gradients) all is noise
# (name, input size): convnets at 64 pixels, models with a fixed grid at the size they need
MODELS = [
    ("resnet18", 64), ("resnet10t", 64), ("resnext26ts", 64), ("seresnext26t_32x4d", 64), ("ecaresnet26t", 64),
    ("skresnet18", 64), ("resnest14d", 64), ("res2net50_14w_8s", 64), ("regnetx_002", 64), ("regnety_002", 64),
    ("densenet121", 64), ("dla34", 64), ("dpn68", 64), ("cspresnet50", 64), ("cspdarknet53", 64),
    ("hrnet_w18_small", 64), ("selecsls42b", 64), ("nf_resnet26", 64), ("repvgg_a0", 64), ("vgg11_bn", 64),
    ("efficientnet_b0", 64), ("tf_efficientnetv2_b0", 64), ("mobilenetv3_small_050", 64),
    ("mobilenetv2_050", 64), ("mnasnet_small", 64), ("ghostnet_050", 64), ("lcnet_050", 64), ("tinynet_e", 64),
    ("rexnet_100", 64), ("fbnetv3_b", 64), ("hardcorenas_a", 64), ("repghostnet_050", 64), ("hgnetv2_b0", 64),
    ("convnext_atto", 64), ("convnextv2_atto", 64), ("inception_next_atto", 64), ("edgenext_xx_small", 64),
    ("poolformer_s12", 64), ("poolformerv2_s12", 64), ("convformer_s18", 64), ("mambaout_femto", 64),
    ("starnet_s1", 64), ("fastvit_t8", 64), ("efficientvit_b0", 64), ("mobilevit_xxs", 64),
    ("mobilevitv2_050", 64), ("efficientformer_l1", 224), ("efficientformerv2_s0", 224), ("levit_128s", 224),
    ("vit_tiny_patch16_224", 64), ("deit_tiny_patch16_224", 64), ("deit_tiny_distilled_patch16_224", 64),
    ("vit_small_patch32_224", 64), ("pit_ti_224", 224), ("xcit_nano_12_p16_224", 64), ("cait_xxs24_224", 64),
    ("mixer_s32_224", 64), ("resmlp_12_224", 64), ("gmlp_ti16_224", 64), ("convit_tiny", 64),
    ("crossvit_tiny_240", 240), ("swin_tiny_patch4_window7_224", 224), ("swinv2_cr_tiny_ns_224", 224),
    ("coat_lite_tiny", 64), ("twins_svt_small", 64), ("pvt_v2_b0", 64), ("nest_tiny", 64), ("gcvit_xxtiny", 224),
    ("maxvit_nano_rw_256", 256), ("coatnet_nano_rw_224", 224), ("tnt_s_patch16_224", 64), ("visformer_tiny", 224),
    ("sequencer2d_s", 64), ("beit_base_patch16_224", 64), ("eva02_tiny_patch14_224", 224),
    ("focalnet_tiny_srf", 64), ("davit_tiny", 64), ("tiny_vit_5m_224", 224), ("hiera_tiny_224", 224),
]


def build(name: str, size: int):
    """The model (eval-free: train mode, seed 0) and whether it takes other input sizes."""
    torch.manual_seed(0)
    kwargs = dict(pretrained=False, num_classes=5, drop_rate=0.0)
    try:
        model = timm.create_model(name, img_size=size, drop_path_rate=0.0, **kwargs)
        return model, False
    except TypeError:
        pass
    try:
        model = timm.create_model(name, drop_path_rate=0.0, **kwargs)
    except TypeError:
        model = timm.create_model(name, **kwargs)
    return model, True


def relative_error(actual, expected) -> float:
    if actual is None or expected is None:
        return 0.0 if actual is None and expected is None else float("inf")
    scale = expected.abs().max().item() or 1.0
    return (actual.float() - expected.float()).abs().max().item() / scale


def step(model, optimizer, x, y) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()


def compare(eager, witness, compiled_owner, what: str) -> float:
    """The largest error of the compiled copy's gradients relative to their eager values' largest
    magnitude. A gradient or buffer passes within RTOL of that, or where its distance from
    `witness`'s (the same step in float64) is at most 10x eager's own or below ATOL: a gradient that is zero
    in exact arithmetic (a key's bias under softmax, a convolution's bias before a norm) is
    float32 noise in both, and so is one whose eager backward differs from itself."""
    worst = 0.0
    floor = ATOL * max((p.grad.abs().max().item() for p in eager.parameters() if p.grad is not None), default=1.0)
    for (name, p), w, q in zip(eager.named_parameters(), witness.parameters(), compiled_owner.parameters()):
        if p.grad is None or q.grad is None:
            if (p.grad is None) != (q.grad is None):
                raise AssertionError(f"{what}: gradient of {name}: {q.grad is None=} {p.grad is None=}")
            continue
        error = relative_error(q.grad, p.grad)
        worst = max(worst, error)
        if error > RTOL:
            exact = w.grad.to(p.grad.dtype) if w.grad is not None else p.grad
            ours, theirs = (q.grad - exact).abs().max().item(), (p.grad - exact).abs().max().item()
            if ours > max(10 * theirs, floor):
                raise AssertionError(f"{what}: gradient of {name} off by {error:.2e} (from float64: ours "
                                     f"{ours:.1e}, eager's {theirs:.1e})")
    for (name, b), w, c in zip(eager.named_buffers(), witness.buffers(), compiled_owner.buffers()):
        if b.shape != c.shape:
            raise AssertionError(f"{what}: buffer {name} is {tuple(c.shape)}, eager's {tuple(b.shape)}")
        if b.is_floating_point() and relative_error(c, b) > RTOL:
            exact = w.to(b.dtype) if w.shape == b.shape else b
            ours, theirs = (c - exact).abs().max().item(), (b - exact).abs().max().item()
            if ours > max(10 * theirs, ATOL):
                raise AssertionError(f"{what}: buffer {name} off by {relative_error(c, b):.2e} (from float64: "
                                     f"ours {ours:.1e}, eager's {theirs:.1e})")
    return worst


def synced(source, *targets) -> None:
    """The parameters and buffers of `targets` set to `source`'s, so each step's comparison
    starts from the same state (noise does not compound across SGD steps)."""
    with torch.no_grad():
        for target in targets:
            for p, q in zip(source.parameters(), target.parameters()):
                q.copy_(p)
            for b, c in zip(source.buffers(), target.buffers()):
                if b.shape == c.shape and b.dtype.is_floating_point == c.dtype.is_floating_point:
                    c.copy_(b)


def run_one(name: str, size: int, compiler: str, dynamic: bool, device: str = "cpu") -> dict:
    row = dict(model=name, status="ok", error=0.0, compiles="", seconds=0.0)
    started = time.perf_counter()
    try:
        eager, resizable = build(name, size)
        eager = eager.to(device)
    except Exception as error:  # not a product failure: the model does not build at this size
        row["status"] = f"skipped: {type(error).__name__}: {str(error).splitlines()[0][:80]}"
        return row
    twin, witness = copy.deepcopy(eager), copy.deepcopy(eager).double()
    compiled = aotgraph.aot_module(twin, compiler, dynamic=dynamic)
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.01)
    opt_c = torch.optim.SGD(twin.parameters(), lr=0.01)
    opt_w = torch.optim.SGD(witness.parameters(), lr=0.01)
    shapes = [(2, size)] * 3
    if dynamic:
        shapes += [(3, size)] + ([(2, size + 32), (3, size + 64)] if resizable else [(4, size)])
    try:
        for i, (batch, side) in enumerate(shapes):
            g = torch.Generator().manual_seed(i)
            x = torch.randn(batch, 3, side, side, generator=g).to(device)
            y = torch.randint(0, 5, (batch,), generator=g).to(device)
            synced(eager, twin, witness)
            try:
                expected = step(eager, opt_e, x, y)
            except RuntimeError as error:  # the model does not take this size (eager fails): not ours
                row["status"] = f"ok (eager fails at {batch}x{side}: {str(error).splitlines()[0][:60]})"
                break
            got = step(compiled, opt_c, x.clone(), y.clone())
            step(witness, opt_w, x.double(), y.clone())
            if relative_error(got, expected) > RTOL:
                raise AssertionError(f"step {i} ({batch}x{side}): loss {got.item():.6f} vs eager {expected.item():.6f}")
            row["error"] = max(row["error"], compare(eager, witness, twin, f"step {i} ({batch}x{side})"))
        entries = getattr(compiled, "aotgraph_entries", None)
        row["compiles"] = len(entries) if entries is not None else ""
    except AssertionError as error:
        row["status"] = f"mismatch: {error}"
    except Exception as error:
        row["status"] = f"error: {type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
        if os.environ.get("SWEEP_TRACEBACK"):
            traceback.print_exc()
    row["seconds"] = time.perf_counter() - started
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--compiler", default="eager")
    parser.add_argument("--dynamic", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "1")))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    rows = []
    for name, size in MODELS:
        if args.names and not any(name.startswith(prefix) for prefix in args.names):
            continue
        row = run_one(name, size, args.compiler, args.dynamic, args.device)
        print(f"{row['model']:34s} {row['status'][:120]:120s} {row['error']:.1e} {row['compiles']} "
              f"{row['seconds']:.1f}s", flush=True)
        rows.append(row)
    ok = sum(row["status"].startswith("ok") for row in rows)
    print(f"\n{ok} of {len(rows)} ok (torch {torch.__version__}, timm {timm.__version__}, "
          f"compiler {args.compiler}, dynamic {args.dynamic}, device {args.device})")
    for row in rows:
        if not row["status"].startswith("ok"):
            print(f"  {row['model']}: {row['status']}")


if __name__ == "__main__":
    sys.exit(main())
