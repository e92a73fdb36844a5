"""The README's Dockerfile and Compose snippets, as build contexts (issue 27: a snippet that
does not build as pasted).

    python -m tests.readme_snippets README.md OUTDIR

writes one directory per snippet under OUTDIR and prints one line per snippet,
``KIND DIRECTORY README.md:LINE``, for .ci/container-test to build:

* ``dockerfile``: every ```dockerfile fence, as ``Dockerfile``, with an empty stand-in for
  each file or directory it copies from the build context (``docker build``);
* ``compose``: every ```yaml fence with a top-level ``services:``, as ``compose.yaml``
  (``docker compose config``);
* ``fragment``: a ```yaml fence whose top-level keys are all a service's (a ``healthcheck:``),
  as one service of a ``compose.yaml`` (``docker compose config``).

Other fences (sh, toml, hcl, a yaml that is neither) are not Docker's and are left alone.
Standard library only: the container test runs it with any Python 3.11+.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

BASE_IMAGE = "python:3.12-slim"  # the repo Dockerfile's default BASE_IMAGE
# Keys a Compose service may have at its top level (a fragment is made of these only).
SERVICE_KEYS = frozenset(
    {
        "build", "cap_add", "command", "depends_on", "entrypoint", "environment", "healthcheck",
        "image", "pid", "ports", "secrets", "user", "volumes",
    }
)  # fmt: skip
INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)\s")
QUOTED = re.compile(r""""(?:[^"\\]|\\.)*"|'[^']*'""")
TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][\w.-]*)\s*:")
BUILD_TAG = re.compile(r"docker build\b[^\n]*?\s(?:-t|--tag)[= ](\S+)")


@dataclass(frozen=True)
class Snippet:
    """One fenced block: what it is, where it starts (the fence's line, 1-based), its text."""

    kind: str  # "dockerfile", "compose" or "fragment"
    line: int
    text: str

    @property
    def where(self) -> str:
        """``README.md:22``."""
        return f"README.md:{self.line}"


def snippets(markdown: str) -> list[Snippet]:
    """The Dockerfile and Compose snippets of a Markdown text, in order."""
    found: list[Snippet] = []
    lines = markdown.splitlines()
    at = 0
    while at < len(lines):
        opening = lines[at]
        if not opening.startswith("```"):
            at += 1
            continue
        info = opening[3:].strip().split(maxsplit=1)
        end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith("```")), len(lines))
        text = "\n".join(lines[at + 1 : end]) + "\n"
        kind = _kind(info[0].lower() if info else "", text)
        if kind:
            found.append(Snippet(kind, at + 1, text))
        at = end + 1
    return found


def _kind(language: str, text: str) -> str:
    if language == "dockerfile":
        return "dockerfile"
    if language not in ("yaml", "yml"):
        return ""
    keys = {m.group(1) for m in map(TOP_LEVEL_KEY.match, text.splitlines()) if m}
    if "services" in keys:
        return "compose"
    if keys and keys <= SERVICE_KEYS:
        return "fragment"
    return ""


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, line) of each line that starts an instruction (not comments, not the
    continuation lines of a RUN)."""
    found = []
    continued = False
    for line in dockerfile.splitlines():
        match = INSTRUCTION.match(line + " ")
        if not continued and match and not line.lstrip().startswith("#"):
            found.append((match.group(1).upper(), line))
        continued = line.rstrip().endswith("\\")
    return found


def trailing_comments(dockerfile: str) -> list[str]:
    """Instruction lines with a ``# comment`` after the instruction: Docker has no trailing
    comments (``COPY a b  # c`` copies a file named ``#``; ``ENV K=v  # c`` fails)."""
    return [line for _, line in instructions(dockerfile) if re.search(r"\s#", QUOTED.sub("", line))]


def images_used(dockerfile: str) -> list[str]:
    """The images a Dockerfile starts from or copies from (not its own stages, not ARGs)."""
    stages: set[str] = set()
    used = []
    for name, line in instructions(dockerfile):
        words = line.split()
        if name == "FROM":
            image = next(w for w in words[1:] if not w.startswith("--"))
            if image.lower() not in stages and "$" not in image:
                used.append(image)
            if len(words) >= 4 and words[-2].upper() == "AS":
                stages.add(words[-1].lower())
        elif name in ("COPY", "ADD"):
            source = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), "")
            if source and source.lower() not in stages and not source.isdigit() and "$" not in source:
                used.append(source)
    return used


def images_built(markdown: str) -> set[str]:
    """The names a ``docker build -t NAME`` in the text tags (``name`` means ``name:latest``)."""
    return {full_name(tag) for tag in BUILD_TAG.findall(markdown)}


def full_name(image: str) -> str:
    """``vault-inject`` -> ``vault-inject:latest``; a tag or digest is kept."""
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"


def context_sources(dockerfile: str) -> list[str]:
    """What COPY/ADD take from the build context (not ``--from``, not URLs)."""
    sources = []
    for name, line in instructions(dockerfile):
        if name not in ("COPY", "ADD"):
            continue
        rest = line.split(None, 1)[1].strip()
        args = json.loads(rest) if rest.startswith("[") else rest.split()
        if any(a.startswith("--from=") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        sources += [a for a in args[:-1] if "://" not in a]
    return sources


def write_context(snippet: Snippet, directory: Path) -> Path:
    """A directory to build ``snippet`` in; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    stub = f"# an empty stand-in for the snippet at {snippet.where}\n"
    if snippet.kind == "dockerfile":
        (directory / "Dockerfile").write_text(snippet.text)
        for source in context_sources(snippet.text):
            path = directory / source.lstrip("/")
            if source.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
                (path / "stand-in.txt").write_text(stub)
            elif not any(c in source for c in "*?["):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(stub)
    elif snippet.kind == "compose":
        (directory / "compose.yaml").write_text(snippet.text)
    else:
        indented = "".join(f"    {line}\n" if line else "\n" for line in snippet.text.splitlines())
        (directory / "compose.yaml").write_text(
            f"{stub}services:\n  snippet:\n    image: snippet\n{indented}"
        )
    return directory


def main(argv: list[str]) -> int:
    """``README.md OUTDIR``: write every snippet's context, print ``KIND DIR WHERE`` lines."""
    if len(argv) != 2:
        print("usage: python -m tests.readme_snippets README.md OUTDIR", file=sys.stderr)
        return 2
    markdown, out = Path(argv[0]).read_text(encoding="utf-8"), Path(argv[1])
    for n, snippet in enumerate(snippets(markdown), 1):
        directory = write_context(snippet, out / f"{n:02d}-{snippet.kind}")
        print(snippet.kind, directory, snippet.where)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
