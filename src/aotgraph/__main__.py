"""Command line: ``python -m aotgraph demo`` and ``python -m aotgraph explain FILE.py:NAME``."""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from pathlib import Path

import torch
from torch.utils._pytree import tree_leaves

from .api import aot_function, aot_module
from .partition import default_partition, min_cut_rematerialization_partition
from .report import format_entry


PARTITIONS = {"default": default_partition, "mincut": min_cut_rematerialization_partition}


def _entry_of(compiled):
    entries = list(compiled.aotgraph_entries.values())
    return entries[-1]


def _backward_through(outputs) -> None:
    differentiable = [t for t in tree_leaves(outputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    if differentiable:
        torch.autograd.backward([t.sum() for t in differentiable])


def demo(args) -> int:
    """A GPT-style decoder, eager vs aotgraph on CPU: loss and every gradient must match."""
    from .models import gpt

    torch.manual_seed(0)
    model, (idx, targets) = gpt(batch=args.batch, seq=args.seq, layers=args.layers)
    reference = copy.deepcopy(model)
    compiled = aot_module(model, args.compiler, partition_fn=PARTITIONS[args.partition])

    loss = compiled(idx, targets)
    loss.backward()
    expected = reference(idx, targets)
    expected.backward()

    mismatches = []
    try:
        torch.testing.assert_close(loss, expected)
    except AssertionError as error:
        mismatches.append(f"loss: {error}")
    grads = list(zip(model.named_parameters(), reference.parameters()))
    for (name, param), ref_param in grads:
        try:
            torch.testing.assert_close(param.grad, ref_param.grad, rtol=1e-4, atol=1e-5)
        except AssertionError as error:
            mismatches.append(f"grad of {name}: {error}")

    print(f"GPT-style decoder: {args.layers} layers, batch {args.batch}, sequence {args.seq}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, compiler {args.compiler!r}")
    print(f"loss eager {expected.item():.6f}  aotgraph {loss.item():.6f}")
    print(f"gradients compared: {len(grads)}, mismatched: {len(mismatches)}")
    print()
    print(format_entry(_entry_of(compiled), copy.deepcopy(reference), (idx, targets)))
    for line in mismatches:
        print("MISMATCH", line, file=sys.stderr)
    print()
    print("OK: aotgraph matches eager" if not mismatches else "FAILED: aotgraph differs from eager")
    return 0 if not mismatches else 1


def _load(target: str):
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise SystemExit(f"explain: expected FILE.py:NAME, got {target!r}")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"explain: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory = getattr(module, name, None)
    if factory is None:
        raise SystemExit(f"explain: {path} has no {name}")
    made = factory()
    if not (isinstance(made, tuple) and len(made) == 2):
        raise SystemExit(f"explain: {name}() must return (callable, example_args)")
    fn, example_args = made
    return fn, tuple(example_args) if isinstance(example_args, (tuple, list)) else (example_args,)


def explain(args) -> int:
    """Compile a user's function or module and print what aotgraph did."""
    fn, example_args = _load(args.target)
    compile_fn = aot_module if isinstance(fn, torch.nn.Module) else aot_function
    compiled = compile_fn(fn, args.compiler, partition_fn=PARTITIONS[args.partition])
    _backward_through(compiled(*example_args))
    print(format_entry(_entry_of(compiled), fn, example_args))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aotgraph", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="GPT-style decoder: eager vs aotgraph, with a report")
    demo_parser.add_argument("--layers", type=int, default=2)
    demo_parser.add_argument("--batch", type=int, default=2)
    demo_parser.add_argument("--seq", type=int, default=32)
    demo_parser.add_argument("--compiler", default="eager")
    demo_parser.add_argument("--partition", choices=sorted(PARTITIONS), default="mincut")
    demo_parser.set_defaults(run=demo)
    explain_parser = commands.add_parser("explain", help="report for FILE.py:NAME returning (callable, args)")
    explain_parser.add_argument("target")
    explain_parser.add_argument("--compiler", default="eager")
    explain_parser.add_argument("--partition", choices=sorted(PARTITIONS), default="mincut")
    explain_parser.set_defaults(run=explain)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
