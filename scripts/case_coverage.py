#!/usr/bin/env python3
"""Which security cases of docs/security-cases.md the tests cite, and which none does.

The convention: a test cites a case with the text ``Case <ID>`` in its docstring (or in a
comment inside the test function), several at once as ``Cases B5, B6`` or
``Cases B5, B6 and B7``. An ID is what the first column of the case tables holds: a
capital letter and a number (``| A1 |``). Text outside test functions cites nothing.

    python scripts/case_coverage.py
    python scripts/case_coverage.py --allow-missing "B4,B17=needs the connection pool"

Exit status: 0 when every case is cited or allowed missing; 1 when a case is missing, or
a test cites an ID the document does not have; 2 on a usage error or a test file that
cannot be parsed (its citations would be lost). Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\|\s*([A-Z][0-9]+)\s*\|")
_ID = r"[A-Z][0-9]+"
CITATION = re.compile(
    rf"(?i:\bcases?)\s+(?:(?i:ids?)\s+)?({_ID}(?:\s*(?:,|&|(?i:and))\s*{_ID})*)\b"
)


def case_ids(document: Path) -> list[str]:
    """The IDs of the table rows, in document order."""
    ids: list[str] = []
    for line in document.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match and match.group(1) not in ids:
            ids.append(match.group(1))
    return ids


def cited_ids(text: str) -> set[str]:
    return {case for match in CITATION.finditer(text) for case in re.findall(_ID, match[1])}


def _test_functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, first line, last line, docstring) of every test function."""
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.ClassDef):
            yield from _test_functions(node, f"{prefix}{node.name}::")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name.startswith("test")):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            yield (f"{prefix}{node.name}", first, node.end_lineno or node.lineno,
                   ast.get_docstring(node) or "")


def citations(test_file: Path, root: Path) -> dict[str, set[str]]:
    """case ID -> the tests of ``test_file`` that cite it."""
    source = test_file.read_text(encoding="utf-8")
    tests = list(_test_functions(ast.parse(source, filename=str(test_file))))
    comments = [(token.start[0], token.string)
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT]
    found: dict[str, set[str]] = defaultdict(set)
    relative = test_file.relative_to(root).as_posix()
    for name, first, last, docstring in tests:
        text = "\n".join([docstring, *(c for line, c in comments if first <= line <= last)])
        for case in cited_ids(text):
            found[case].add(f"{relative}::{name}")
    return found


def parse_allowances(values: list[str], known: list[str]) -> dict[str, str]:
    """``ID[,ID...][=reason]`` arguments -> {ID: reason}."""
    allowed: dict[str, str] = {}
    for value in values:
        ids, _, reason = value.partition("=")
        for case in filter(None, (part.strip() for part in ids.split(","))):
            if case not in known:
                raise SystemExit(f"--allow-missing: {case} is not a case of the document")
            allowed[case] = reason.strip() or "no reason given"
    return allowed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, default=ROOT / "docs" / "security-cases.md",
                        help="the case document (default: docs/security-cases.md)")
    parser.add_argument("--tests", type=Path, default=ROOT / "tests",
                        help="the directory scanned for tests/**/*.py (default: tests)")
    parser.add_argument("--allow-missing", action="append", default=[],
                        metavar="ID[,ID...][=REASON]",
                        help="cases known to be missing, and why (repeatable)")
    args = parser.parse_args(argv)

    known = case_ids(args.cases)
    if not known:
        print(f"no case rows (| A1 | ...) found in {args.cases}", file=sys.stderr)
        return 2
    try:
        allowed = parse_allowances(args.allow_missing, known)
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 2
    root = args.tests.resolve().parent
    cited: dict[str, set[str]] = defaultdict(set)
    for test_file in sorted(args.tests.resolve().rglob("*.py")):
        try:
            found = citations(test_file, root)
        except (SyntaxError, UnicodeDecodeError, tokenize.TokenError) as error:
            print(f"cannot read the citations of {test_file}: {error}", file=sys.stderr)
            return 2
        for case, tests in found.items():
            cited[case] |= tests

    covered = [case for case in known if cited.get(case)]
    missing = [case for case in known if not cited.get(case)]
    unknown = sorted(set(cited) - set(known))
    print(f"{len(known)} cases in {args.cases.name}: {len(covered)} cited by tests, "
          f"{len(missing)} not cited.\n")
    print(f"{'Case':<6}Cited by")
    for case in covered:
        for position, test in enumerate(sorted(cited[case])):
            print(f"{case if position == 0 else '':<6}{test}")
    failed = False
    if missing:
        print("\nNot cited by any test:")
        for case in missing:
            note = f"allowed: {allowed[case]}" if case in allowed else "MISSING"
            print(f"  {case:<5}{note}")
            failed = failed or case not in allowed
    for case in sorted(set(allowed) - set(missing)):
        print(f"\nnote: {case} is cited now; drop it from --allow-missing")
    if unknown:
        failed = True
        print("\nCited but not in the document (typo?):")
        for case in unknown:
            print(f"  {case:<5}{', '.join(sorted(cited[case]))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
