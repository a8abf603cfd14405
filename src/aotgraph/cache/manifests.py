"""Key manifests: what a disk-cache key is made of, part by part, kept next to each entry so
that a miss can say which part differs from the closest stored entry (as torch's recompile
reasons name the guard that failed).

A `KeyParts` is the ordered list of a key's parts, each ``(name, digest, preview)``: the name
says what it is (``"environment: torch"``, ``"input 3"``, ``"program graph: node add_3"``), the
digest is the SHA-256 of its fingerprint's text, the preview that text's start (all of it for
the settings: a compiler's identity holds its whole config). The key is the SHA-256 of the names
and digests in order: two calls share a key exactly when every part matches. The manifest
stored with an entry is its parts as JSON (`manifest_json`, digests shortened to 64 bits: they
only tell parts apart for `explain_miss`, which compares a missed key's parts with the stored
manifests).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["KeyParts", "explain_miss", "format_manifest", "manifest_json", "parts_from_json"]

PREVIEW_CHARS = 240
WHOLE_TEXT = 1 << 16  # a preview that keeps a settings part's text whole (Inductor's config: ~25k characters)
_DIGEST_CHARS = 16
_DIFFERENCES_SHOWN = 3
_CONTEXT_BEFORE, _CONTEXT_CHARS = 40, 120  # of a differing part's preview, around the first difference


@dataclass(frozen=True)
class KeyParts:
    """The parts of one key, in order: ``(name, digest, preview)`` each."""

    parts: tuple[tuple[str, str, str], ...] = ()

    @functools.cached_property
    def key(self) -> str:
        return hashlib.sha256(repr([(name, digest) for name, digest, _ in self.parts]).encode()).hexdigest()

    def extended(self, fingerprints: Iterable[tuple[str, Any]], preview_chars: int = PREVIEW_CHARS) -> "KeyParts":
        """These parts followed by one per ``(name, fingerprint)`` (a fingerprint is a nested
        tuple of plain values, see `fingerprints.fingerprint`), previews cut at `preview_chars`."""
        more = []
        for name, value in fingerprints:
            text = repr(value)
            preview = text if len(text) <= preview_chars else text[:preview_chars] + "..."
            more.append((name, hashlib.sha256(text.encode()).hexdigest(), preview))
        return KeyParts(self.parts + tuple(more))


def manifest_json(parts: KeyParts) -> bytes:
    shortened = [(name, digest[:_DIGEST_CHARS], preview) for name, digest, preview in parts.parts]
    return json.dumps({"key": parts.key, "parts": shortened}).encode()


def parts_from_json(data: bytes) -> KeyParts:
    """The parts `manifest_json` wrote; ValueError where `data` is not such a manifest."""
    try:
        parts = json.loads(data)["parts"]
        return KeyParts(tuple((str(name), str(digest), str(preview)) for name, digest, preview in parts))
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"not a key manifest ({type(error).__name__}: {error})") from None


def explain_miss(parts: KeyParts, stored: Iterable[tuple[str, KeyParts]]) -> str:
    """Why `parts`' key found no entry, against the `stored` manifests ``(key, parts)``: the
    parts in which the closest one (fewest differing parts) differs, each with both previews."""
    mine = {name: (digest[:_DIGEST_CHARS], preview) for name, digest, preview in parts.parts}
    best = None
    for key, other in stored:
        theirs = {name: (digest[:_DIGEST_CHARS], preview) for name, digest, preview in other.parts}
        names = dict.fromkeys([*mine, *theirs])
        differing = [name for name in names if mine.get(name, ("",))[0] != theirs.get(name, ("",))[0]]
        if best is None or len(differing) < len(best[1]):
            best = (key, differing, theirs, len(names))
    if best is None:
        return "no entry is stored yet"
    key, differing, theirs, count = best
    if not differing:
        return f"the stored entry {key[:12]} has the same parts (removed or written meanwhile?)"
    shown = [f"{name}: {_difference(theirs.get(name), mine.get(name))}" for name in differing[:_DIFFERENCES_SHOWN]]
    more = f"; and {len(differing) - len(shown)} more" if len(differing) > len(shown) else ""
    return (f"the closest stored entry {key[:12]} differs in {len(differing)} of {count} key parts: "
            + "; ".join(shown) + more)


def format_manifest(parts: KeyParts, preview_chars: int = 100) -> str:
    """`parts` as lines ``name  digest  preview``; a graph's nodes as one line (their count)."""
    lines, nodes = [], {}
    for name, digest, preview in parts.parts:
        graph, _, node = name.partition(": node ")
        if node:
            if graph not in nodes:
                nodes[graph] = 0
                lines.append(graph)
            nodes[graph] += 1
        else:
            lines.append(f"  {name:<40} {digest[:_DIGEST_CHARS]}  {preview[:preview_chars]}")
    return "\n".join(f"  {line:<40} {nodes[line]} nodes" if line in nodes else line for line in lines)


def _difference(stored, current) -> str:
    """``stored -> current`` for one part's ``(digest, preview)`` pairs (None: absent), each
    preview cut around the first character where they differ."""
    if stored is None or current is None:
        return f"{_around(stored, 0)} -> {_around(current, 0)}"
    first = next((i for i, (a, b) in enumerate(zip(stored[1], current[1])) if a != b),
                 min(len(stored[1]), len(current[1])))
    return f"{_around(stored, first)} -> {_around(current, first)}"


def _around(part, position: int) -> str:
    if part is None:
        return "(absent)"
    digest, preview = part
    start = max(0, position - _CONTEXT_BEFORE)
    end = start + _CONTEXT_CHARS
    return f"{'...' if start else ''}{preview[start:end]}{'...' if end < len(preview) else ''} [{digest[:8]}]"
