#!/usr/bin/env python3
"""Checks that tests/c/test_bad_input.c calls every function the header exports, and passes
NULL in every pointer parameter of each at least once (`make c-api-coverage`).

The parameter lists come from include/hodei_workers.h (cbindgen writes one declaration a
line); the calls are read from the test's text, arguments split at the top-level commas, so a
call spread over several lines or wrapped in a macro (INVALID(...), CHECK_STATUS(...)) counts.
An argument counts as NULL when it is `NULL` or a cast of it (`(hw_manager **)NULL`). Needs
only python3.

Usage: c_api_coverage.py [HEADER [TEST]]
"""

from __future__ import annotations

import re
import sys

# The return type may hold digits (`uint32_t hw_abi_version(void);`): without them in the class
# such a function would be skipped, unseen, rather than checked.
DECLARATION = re.compile(r"^[a-z0-9_ *]*?[ *](hw_[a-z0-9_]*)\((.*)\);$")
# A declaration (top level: column 0) that DECLARATION did not read fails the check.
UNREAD_DECLARATION = re.compile(r"^[A-Za-z].*\bhw_[a-z0-9_]*\(.*\);$")
NULL_ARG = re.compile(r"^(\([^()]*\)\s*)*NULL$")


def exported(header: str) -> dict[str, list[tuple[str, bool]]]:
    """Each function's parameters, in order: (name, is a pointer)."""
    functions: dict[str, list[tuple[str, bool]]] = {}
    for line in header.splitlines():
        m = DECLARATION.match(line.strip())
        if not m:
            if UNREAD_DECLARATION.match(line):
                sys.exit(f"c-api-coverage: cannot read the declaration `{line}` in the header")
            continue
        params = [] if m.group(2).strip() in ("", "void") else m.group(2).split(",")
        functions[m.group(1)] = [
            (re.split(r"[ *]", p.strip())[-1], "*" in p) for p in params
        ]
    return functions


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def calls(text: str, name: str) -> list[list[str]]:
    """The argument lists of every call of `name` in `text`."""
    found = []
    for m in re.finditer(r"\b" + re.escape(name) + r"\s*\(", text):
        depth, start, args = 1, m.end(), []
        i = start
        while i < len(text) and depth:
            c = text[i]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            elif c == "," and depth == 1:
                args.append(text[start:i].strip())
                start = i + 1
            elif c == '"':  # skip a string literal (commas and parentheses in it)
                i += 1
                while i < len(text) and text[i] != '"':
                    i += 2 if text[i] == "\\" else 1
            elif c == "'":
                i += 1
                while i < len(text) and text[i] != "'":
                    i += 2 if text[i] == "\\" else 1
            i += 1
        last = text[start : i - 1].strip()
        if last or args:
            args.append(last)
        found.append(args)
    return found


def main() -> int:
    header_path = sys.argv[1] if len(sys.argv) > 1 else "include/hodei_workers.h"
    test_path = sys.argv[2] if len(sys.argv) > 2 else "tests/c/test_bad_input.c"
    with open(header_path, encoding="utf-8") as f:
        functions = exported(f.read())
    with open(test_path, encoding="utf-8") as f:
        test = strip_comments(f.read())
    if not functions:
        print(f"c-api-coverage: no function found in {header_path}")
        return 1
    missing = []
    for name, params in sorted(functions.items()):
        seen = calls(test, name)
        if not seen:
            missing.append(f"{test_path} does not call {name}")
            continue
        for index, (param, pointer) in enumerate(params):
            if pointer and not any(
                len(args) == len(params) and NULL_ARG.match(args[index]) for args in seen
            ):
                missing.append(f"{test_path} never passes NULL as `{param}` of {name}")
    for line in missing:
        print(line)
    if missing:
        return 1
    pointers = sum(p for params in functions.values() for _, p in params)
    print(
        f"c-api-coverage: every one of the {len(functions)} exported functions is in "
        f"{test_path}, with NULL in each of its {pointers} pointer parameters"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
