"""Reading an HTML page in a test: its elements, each with its attributes and its text, as a browser
would see them, so that a test asserts on what a reader gets rather than on the markup's spelling."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

# Elements that have no end tag, so never contain anything.
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text of the element and everything in it."""
        return "".join(self.parts)

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        # Close up to the matching element: HTML lets some end tags be left out.
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)


def elements(page: str) -> list[Element]:
    """Every element of the page, in document order."""
    parser = _Parser()
    parser.feed(page)
    parser.close()
    return parser.elements


def texts(page: str, *, tag: str | None = None, css_class: str | None = None) -> list[str]:
    """The text of each element with that tag and/or class, whitespace collapsed."""
    return [
        " ".join(e.text.split())
        for e in elements(page)
        if (tag is None or e.tag == tag) and (css_class is None or css_class in e.classes)
    ]
