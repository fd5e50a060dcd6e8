"""A small DOM for the report tests: parse HTML (a page, or chromium's ``--dump-dom``) into elements.

``parse(html)`` gives the root :class:`Element`; ``find_all(tag, cls=..., **attrs)`` walks the tree
(``cls`` matches one class among several; ``attrs`` match exactly; ``hidden=None`` means absent).
"""

from __future__ import annotations

from html.parser import HTMLParser

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_SVG_EMPTY = {"line", "polygon", "path", "rect", "circle", "use", "stop"}


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.parts: list[str] = []  # text and children, in order (children as "")

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    @property
    def text(self) -> str:
        out, kids = [], iter(self.children)
        for part in self.parts:
            out.append(next(kids).text if part is None else part)
        return "".join(out)

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs) -> list[Element]:
        out = []
        for el in self.iter():
            if tag is not None and el.tag != tag:
                continue
            if cls is not None and cls not in el.classes:
                continue
            if any((el.attrs.get(k.replace("_", "-")) != v) if v is not None else (k.replace("_", "-") in el.attrs)
                   for k, v in attrs.items()):
                continue
            out.append(el)
        return out

    def find(self, tag: str | None = None, cls: str | None = None, **attrs) -> Element | None:
        found = self.find_all(tag, cls, **attrs)
        return found[0] if found else None

    def by_id(self, ident: str) -> Element | None:
        for el in self.iter():
            if el.attrs.get("id") == ident:
                return el
        return None

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        el = Element(tag, dict(attrs), self.cur)
        self.cur.children.append(el)
        self.cur.parts.append(None)
        if tag not in _VOID:
            self.cur = el

    def handle_startendtag(self, tag, attrs):
        el = Element(tag, dict(attrs), self.cur)
        self.cur.children.append(el)
        self.cur.parts.append(None)

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        node = self.cur
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.cur = node.parent
        elif tag in _SVG_EMPTY:
            return

    def handle_data(self, data):
        self.cur.parts.append(data)


def parse(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root
