"""The package index's page: README-pypi.md with its links made absolute.

Everything else is declared in setup.cfg. The repository's address is written once, as
setup.cfg's ``url``: a link of README-pypi.md to a file of the repository (``docs/...``,
``LICENSE``) becomes that file on the repository's main branch, an image its raw bytes,
so the page works on an index that has none of the repository's files. Code blocks are
left as they are.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
BRANCH = "main"
#: A Markdown link or image whose target is neither a URL (``scheme:``) nor an anchor.
RELATIVE_LINK = re.compile(r"(!?)\[([^\]]*)\]\((?![A-Za-z][A-Za-z0-9+.-]*:|#)([^)\s]+)\)")
#: A fenced code block, kept whole by re.split.
CODE_BLOCK = re.compile(r"(^```.*?^```[^\n]*$)", re.MULTILINE | re.DOTALL)


def long_description() -> str:
    config = configparser.ConfigParser()
    config.read(HERE / "setup.cfg", encoding="utf-8")
    url = config["metadata"]["url"].rstrip("/")

    def absolute(link: re.Match[str]) -> str:
        image, text, target = link.groups()
        return f"{image}[{text}]({url}/{'raw' if image else 'blob'}/{BRANCH}/{target})"

    parts = CODE_BLOCK.split((HERE / "README-pypi.md").read_text(encoding="utf-8"))
    return "".join(part if index % 2 else RELATIVE_LINK.sub(absolute, part)
                   for index, part in enumerate(parts))


setup(long_description=long_description())
