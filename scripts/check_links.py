#!/usr/bin/env python3
"""Fail on a broken link in the built manual or in Markdown files of the repository.

    check_links.py --html DIR [--markdown FILE...]

In the HTML (mdBook's output): every relative `href` and `src` must name a file of the book,
and a `#fragment` must name an element id in that file. In Markdown files (the README): every
relative link or image must name a file of the repository. Links to other sites are not
followed (the build machines have no network): only their scheme is checked.
"""

import argparse
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL = ("http", "https", "mailto")


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []  # (line, attribute, value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) is not None and tag in ("a", "img", "link", "script"):
                self.links.append((self.getpos()[0], key, a[key]))


def parse(path):
    p = Page()
    p.feed(path.read_text(errors="replace"))
    return p


def check_html(root):
    root = root.resolve()
    pages = {path: parse(path) for path in root.rglob("*.html")}
    if not pages:
        return [f"{root}: no HTML pages (was the manual built?)"]
    problems = []
    for path, page in pages.items():
        for line, attr, value in page.links:
            url = urlsplit(value)
            where = f"{path.relative_to(root)}:{line}: {attr}={value!r}"
            if url.scheme in EXTERNAL or value.startswith("//"):
                continue
            if url.scheme:
                if url.scheme not in ("javascript", "data"):
                    problems.append(f"{where}: scheme {url.scheme!r} is not one a reader can follow")
                continue
            target = path if not url.path else (path.parent / unquote(url.path)).resolve()
            if url.path and target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{where}: no such file in the book")
                continue
            if url.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(url.fragment) not in ids:
                    problems.append(f"{where}: {target.relative_to(root)} has no element with id {url.fragment!r}")
    return problems


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def check_markdown(path):
    problems, fence = [], False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            value = m.group(1)
            url = urlsplit(value)
            if url.scheme or not url.path:
                continue
            if not (path.parent / unquote(url.path)).exists():
                problems.append(f"{path}:{n}: link {value!r}: no such file")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--html", type=Path, required=True)
    ap.add_argument("--markdown", type=Path, nargs="*", default=[])
    a = ap.parse_args()
    problems = check_html(a.html)
    for md in a.markdown:
        problems += check_markdown(md)
    for p in problems:
        print(f"broken link: {p}", file=sys.stderr)
    if problems:
        sys.exit(f"check_links: {len(problems)} broken link(s)")
    print(f"check_links: every link resolves ({a.html}, {len(a.markdown)} Markdown file(s))")


if __name__ == "__main__":
    main()
