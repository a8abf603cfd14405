"""aotgraph's command line: demo (a GPT-style decoder, eager vs aotgraph, with a report),
explain FILE.py:NAME (what aotgraph does with your function or module; ``--html`` writes the
report as one self-contained page, ``--json`` as data), and cache info / cache clear (the
compile cache on disk).

Exit status: 0 done (and any parity check passed), 1 a parity check found a mismatch,
2 an error, printed as one line on stderr that names the cause and the fix; ``--debug``
prints the traceback before it.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.utils._pytree import tree_leaves

from .api import aot_function, aot_module
from .cache.disk import CacheDirError, DiskCache
from .cache.manifests import format_manifest
from .compilers import COMPILER_NAMES
from .errors import AotGraphError
from .partition.budget import check_memory_budget
from .explain import PARTITIONS, argument_names, backward_through, input_names, names_for, state_names
from .report import build_report, format_entry, format_graph_code, write_html

COMPILERS = COMPILER_NAMES  # the names `compilers.resolve_compiler` accepts
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # of the parity checks, for outputs, gradients and buffers


class CommandError(Exception):
    """A mistake in what the command was asked to do; main prints it as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake raised as a CommandError instead of printed with the usage."""

    def error(self, message: str):
        raise CommandError(f"{message}; see {self.prog} --help")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _budgets(text: str) -> tuple:
    """``0.5,0.25`` -> (0.5, 0.25); a whole number is bytes, as `partition_for`'s budget."""
    try:
        values = tuple(float(v) if "." in v else int(v) for v in text.split(",") if v.strip())
        for value in values:
            check_memory_budget(value, "--budgets")
    except (ValueError, AotGraphError) as error:
        raise argparse.ArgumentTypeError(f"expected budgets like 0.75,0.5 (fractions in [0, 1]) or bytes, "
                                         f"got {text!r}") from error
    return values


def _entry_of(compiled):
    entries = list(compiled.aotgraph_entries.values())
    return entries[-1]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error_message(error: Exception) -> str:
    """One line: a CommandError's or AotGraphError's message (they name cause and fix), else
    the exception's type and message."""
    if isinstance(error, (CommandError, AotGraphError)):
        return _one_line(str(error))
    return _one_line(f"{type(error).__name__}: {error}; --debug shows the traceback")


def _random_state(state=None):
    """The random number generators' state (CPU, and CUDA where initialized); given one, set it."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if state is None:
        return torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
    return state


def parity(program: Callable, reference: Callable, args: tuple, reference_args: tuple,
           outputs: Any, expected: Any) -> list[tuple[str, Optional[str]]]:
    """Compare a compiled run of `program` with an eager run of its deep copy `reference`, each
    already run forward (`outputs`, `expected`) and backward: outputs; for a module, each
    parameter's gradient and each buffer; each argument tensor's value (mutations) and gradient.
    Returns (what was compared, None or the one-line mismatch)."""
    pairs = [("outputs", outputs, expected)]
    if isinstance(program, torch.nn.Module):
        pairs += [(f"grad of {name}", p.grad, r.grad)
                  for (name, p), r in zip(program.named_parameters(), reference.parameters())]
        pairs += [(f"buffer {name}", b, r) for (name, b), r in zip(program.named_buffers(), reference.buffers())]
    names = argument_names(program, args)
    for name, value, ref in zip(names, tree_leaves(args), tree_leaves(reference_args)):
        if isinstance(value, torch.Tensor):
            pairs += [(f"input {name}", value.detach(), ref.detach()), (f"grad of input {name}", value.grad, ref.grad)]
    results = []
    for what, actual, wanted in pairs:
        try:
            torch.testing.assert_close(actual, wanted, **TOLERANCE)
            results.append((what, None))
        except AssertionError as error:
            results.append((what, _one_line(str(error))))
    return results


def _print_parity(results: list[tuple[str, Optional[str]]]) -> int:
    """Print the mismatches and the verdict of a parity check; return its exit status."""
    mismatches = [(what, error) for what, error in results if error is not None]
    print(f"compared with eager: {len(results)} values (outputs, gradients, buffers, inputs), "
          f"mismatched: {len(mismatches)}")
    for what, error in mismatches:
        print(f"MISMATCH {what}: {error}")
    print("OK: aotgraph matches eager" if not mismatches else "FAILED: aotgraph differs from eager")
    return 1 if mismatches else 0


def demo(args) -> int:
    """A GPT-style decoder, eager vs aotgraph on CPU: loss and every gradient must match."""
    from .models import gpt

    torch.manual_seed(0)
    model, inputs = gpt(batch=args.batch, seq=args.seq, layers=args.layers)
    reference, reference_inputs = copy.deepcopy(model), copy.deepcopy(inputs)
    compiled = aot_module(model, args.compiler, partition_fn=PARTITIONS[args.partition])

    random_state = _random_state()
    loss = compiled(*inputs)
    loss.backward()
    _random_state(random_state)
    expected = reference(*reference_inputs)
    expected.backward()
    results = parity(model, reference, inputs, reference_inputs, loss, expected)

    print(f"GPT-style decoder: {args.layers} layers, batch {args.batch}, sequence {args.seq}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, compiler {args.compiler!r}, "
          f"partition {args.partition!r}")
    print(f"loss eager {expected.item():.6f}  aotgraph {loss.item():.6f}")
    print()
    entry = _entry_of(compiled)
    names = names_for(entry, input_names(model, inputs))
    print(format_entry(entry, copy.deepcopy(reference), inputs, names))
    if args.html or args.json:
        _write_report(args, entry, reference, reference_inputs, names, f"demo: GPT-style decoder, {args.layers} layers")
    print()
    return _print_parity(results)


def _run_file(path: str):
    """The Python file at `path`, run as a module."""
    if not Path(path).is_file():
        raise CommandError(f"no such file {path!r}; give the path of a Python file, as in FILE.py:NAME")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot load {path!r} as Python; give a .py file, as in FILE.py:NAME")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise CommandError(f"running {path} raised {type(error).__name__}: {error}; fix the file "
                           "(--debug shows the traceback)") from error
    return module


def _load(target: str) -> tuple[Callable, tuple]:
    """``NAME()`` of ``FILE.py:NAME``: (the callable to compile, its example arguments)."""
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise CommandError(f"expected FILE.py:NAME, got {target!r}; NAME is a function in the file that returns "
                           "(callable, example_args)")
    factory = getattr(_run_file(path), name, None)
    if not callable(factory):
        raise CommandError(f"{path} defines no function {name!r}; define {name}() returning (callable, example_args), "
                           "or name the one it has")
    try:
        made = factory()
    except Exception as error:
        raise CommandError(f"{name}() in {path} raised {type(error).__name__}: {error}; fix {name}() "
                           "(--debug shows the traceback)") from error
    if not (isinstance(made, (tuple, list)) and len(made) == 2 and callable(made[0])):
        raise CommandError(f"{name}() returned {type(made).__name__}, not (callable, example_args); return a "
                           "function or nn.Module and the arguments to call it with")
    fn, example_args = made
    return fn, tuple(example_args) if isinstance(example_args, (tuple, list)) else (example_args,)


def _deep_copies(fn: Callable, example_args: tuple) -> tuple[Callable, tuple]:
    """Eager's copies for a parity check: the module (a function is not copied) and the arguments."""
    try:
        return (copy.deepcopy(fn) if isinstance(fn, torch.nn.Module) else fn), copy.deepcopy(example_args)
    except RuntimeError as error:
        raise CommandError(f"--check cannot copy the program or its arguments ({_one_line(str(error))}); "
                           "return leaf tensors (made by the user, not computed) as example_args") from error


def _headline(args, fn: Callable, example_args: tuple) -> str:
    if isinstance(fn, torch.nn.Module):
        what = f"{type(fn).__name__} (nn.Module, {len(state_names(fn))} parameters and buffers)"
    else:
        what = f"function {getattr(fn, '__qualname__', type(fn).__name__)}"
    return (f"{args.target}: {what}, {len(example_args)} example argument(s); compiler {args.compiler!r}, "
            f"partition {args.partition!r}")


def explain(args) -> int:
    """Compile a user's function or module, run it forward and backward, and print what aotgraph did."""
    fn, example_args = _load(args.target)
    if args.check:
        reference, reference_args = _deep_copies(fn, example_args)
    compile_fn = aot_module if isinstance(fn, torch.nn.Module) else aot_function
    compiled = compile_fn(fn, args.compiler, partition_fn=PARTITIONS[args.partition])
    random_state = _random_state()
    outputs = compiled(*example_args)
    backward_through(outputs)
    if args.check:
        _random_state(random_state)  # eager draws what the compiled run drew (dropout's masks)
        expected = reference(*reference_args)
        backward_through(expected)
        results = parity(fn, reference, example_args, reference_args, outputs, expected)
    entry = _entry_of(compiled)
    names = names_for(entry, input_names(fn, example_args))
    print(_headline(args, fn, example_args))
    print()
    print(format_entry(entry, fn, example_args, names))
    if args.code:
        print()
        print(format_graph_code(entry, names))
    if args.html or args.json:
        _write_report(args, entry, fn, example_args, names, args.target)
    if not args.check:
        return 0
    print()
    return _print_parity(results)


def _write_report(args, entry, fn: Callable, example_args: tuple, names, title: str) -> None:
    """The report of `entry` as HTML (``--html``) and/or JSON (``--json``), with eager's memory
    timeline measured on one more run of `fn` (no ``.grad`` written) and one timeline per ``--budgets``."""
    report = build_report(entry, fn, example_args, names, title=title, compiler=args.compiler,
                          partition_name=args.partition, budgets=args.budgets)
    print()
    for path, write in ((args.html, write_html), (args.json, lambda r, p: Path(p).write_text(r.to_json(indent=1)))):
        if path:
            try:
                write(report, path)
            except OSError as error:
                raise CommandError(f"cannot write {path}: {error.strerror or error}; give a writable path") from error
            print(f"wrote {path}")


def cache_command(args) -> int:
    """``info``: the disk cache's directory, entries, bytes, hits and misses (counted by every
    process that used it), with ``--verbose`` each entry's key manifest; ``clear``: remove its
    entries and reset the counters."""
    store = DiskCache()
    if args.action == "clear":
        store.ensure_safe()
        removed = store.clear()
        print(f"removed {removed} entries from {store.directory}")
        return 0
    if store.directory.exists() and not store.directory.is_dir():
        raise CacheDirError(f"the cache directory {store.directory} is a file", "cache",
                            "set AOTGRAPH_CACHE_DIR to a directory you own")
    stats = store.stats()
    lookups = stats.hits + stats.misses
    print(f"directory  {stats.directory}")
    print(f"entries    {stats.entries}")
    print(f"bytes      {stats.bytes}")
    print(f"hits       {stats.hits}")
    print(f"misses     {stats.misses}")
    if lookups:
        print(f"hit rate   {stats.hits / lookups:.1%}")
    if args.verbose:
        for key, parts in store.manifests():
            print(f"\nentry {key}")
            print(format_manifest(parts))
    return 0


def _add_shared_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compiler", choices=COMPILERS, default="eager",
                        help="compiler of the forward and backward graphs: %(choices)s (default: %(default)s)")
    parser.add_argument("--partition", choices=sorted(PARTITIONS), default="mincut",
                        help="what the backward saves and what it recomputes: %(choices)s (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, print the traceback too")


def _add_report_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--html", metavar="FILE", help="write the report as one self-contained HTML page: "
                        "stages, the joint graph, saved tensors, memory timelines, code")
    parser.add_argument("--json", metavar="FILE", help="write the same report as JSON")
    parser.add_argument("--budgets", type=_budgets, default=(), metavar="B,B,...",
                        help="memory budgets (fractions of the default plan's saved bytes, e.g. 0.75,0.5, "
                             "or bytes) whose predicted timelines the HTML/JSON report adds")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=__doc__.split("\n\n")[0],
                     epilog="Exit status: 0 done, 1 a parity check failed, 2 an error (one line on stderr).")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser("demo", help="GPT-style decoder: eager vs aotgraph, with a report",
                                      description=demo.__doc__)
    demo_parser.add_argument("--layers", type=_positive_int, default=2, help="decoder blocks (default: %(default)s)")
    demo_parser.add_argument("--batch", type=_positive_int, default=2, help="sequences per batch (default: %(default)s)")
    demo_parser.add_argument("--seq", type=_positive_int, default=32, help="tokens per sequence (default: %(default)s)")
    _add_shared_flags(demo_parser)
    _add_report_flags(demo_parser)
    demo_parser.set_defaults(run=demo)
    explain_parser = commands.add_parser("explain", help="report on FILE.py:NAME, where NAME() returns "
                                         "(callable, example_args)", description=explain.__doc__)
    explain_parser.add_argument("target", metavar="FILE.py:NAME",
                                help="NAME() returns (function or nn.Module, example arguments)")
    _add_shared_flags(explain_parser)
    explain_parser.add_argument("--code", action="store_true", help="print the forward and backward graphs' code")
    explain_parser.add_argument("--check", action="store_true",
                                help="compare outputs, gradients and buffers with eager on a deep copy; "
                                     "prints OK or FAILED (exit status 1)")
    _add_report_flags(explain_parser)
    explain_parser.set_defaults(run=explain)
    cache_parser = commands.add_parser("cache", help="the compile cache on disk: info or clear",
                                       description=cache_command.__doc__)
    cache_parser.add_argument("action", choices=("info", "clear"), help="%(choices)s")
    cache_parser.add_argument("--verbose", "-v", action="store_true",
                              help="info: also each entry's key manifest (the parts its key was made of), newest first")
    cache_parser.set_defaults(run=cache_command)
    return parser


def _prog_name() -> str:
    """``aotgraph`` when run as the console script (pyproject's [project.scripts]), else ``python -m aotgraph``."""
    return "aotgraph" if Path(sys.argv[0]).stem == "aotgraph" else "python -m aotgraph"


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line on `argv` (default: ``sys.argv[1:]``); return the exit status.
    Every error is one line on stderr (``PROG COMMAND: error: ...``) and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_prog_name())
    where = parser.prog
    try:
        args = parser.parse_args(argv)
        where = f"{parser.prog} {args.command}"
        return args.run(args)
    except Exception as error:  # ours, aotgraph's, the user's program's: each one line
        if "--debug" in argv:
            traceback.print_exception(error)
        print(f"{where}: error: {_error_message(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
