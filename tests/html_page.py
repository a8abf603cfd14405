"""Reading a report page in tests: its elements by html.parser, and the page in headless Chromium."""
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = shutil.which("chromium")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Element:
    def __init__(self, tag: str, attrs: dict, parent):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], ""

    def find_all(self, tag=None, **attrs):
        for child in self.children:
            if (tag is None or child.tag == tag) and all(child.attrs.get(k.replace("_", "-")) == v
                                                         for k, v in attrs.items()):
                yield child
            yield from child.find_all(tag, **attrs)

    def with_attr(self, name: str):
        return [e for e in self.find_all() if name in e.attrs]

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


class _Builder(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "line"}

    def __init__(self):
        super().__init__()
        self.root = Element("document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), self.current)
        self.current.children.append(element)
        if tag not in self.VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Element(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.text += data


def parse(page: str) -> Element:
    builder = _Builder()
    builder.feed(page)
    builder.close()
    return builder.root


def by_id(root: Element, element_id: str) -> Element:
    found = [e for e in root.find_all() if e.attrs.get("id") == element_id]
    assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
    return found[0]


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with its own throwaway profile; returns the finished process."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


def rendered_body(path: Path, fragment: str = "") -> dict:
    """The attributes of the page's <body> after its scripts ran (the page marks its state there),
    and under "error-text" the text of a #script-error element if the page made one."""
    done = chromium("--dump-dom", path.resolve().as_uri() + fragment)
    assert done.returncode == 0, done.stderr[-2000:]
    root = parse(done.stdout)
    body = next(root.find_all("body"))
    errors = [e.all_text() for e in root.find_all("pre") if e.attrs.get("id") == "script-error"]
    return {**body.attrs, **({"error-text": errors[0]} if errors else {})}


def screenshot(path: Path, png: Path, size: str = "1400,2400") -> None:
    done = chromium(f"--screenshot={png}", f"--window-size={size}", "--hide-scrollbars", path.resolve().as_uri())
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
