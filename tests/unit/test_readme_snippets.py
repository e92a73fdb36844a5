"""The README's Dockerfile and Compose snippets build as pasted (issue 27). The container test
(.ci/container-test) builds what tests/readme_snippets.py extracts; these tests check the
extractor and what can be told without an engine: no trailing comments, images that exist."""

from __future__ import annotations

from pathlib import Path

from tests.readme_snippets import (
    BASE_IMAGE,
    Snippet,
    full_name,
    images_built,
    images_used,
    main,
    snippets,
    trailing_comments,
    write_context,
)

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_extractor_finds_the_readme_snippets() -> None:
    """Both Dockerfiles, the sidecar and HA compose files and the healthcheck fragment."""
    found = snippets(README)
    kinds = [s.kind for s in found]
    assert kinds.count("dockerfile") >= 2, found
    assert kinds.count("compose") >= 2, found
    assert kinds.count("fragment") >= 1, found
    assert any("inject.toml" in s.text for s in found if s.kind == "dockerfile")
    assert any("COPY --from=" in s.text for s in found if s.kind == "dockerfile")
    assert any("healthcheck:" in s.text for s in found if s.kind == "fragment")
    for snippet in found:  # each starts at its fence
        assert README.splitlines()[snippet.line - 1].startswith("```"), snippet.where


def test_no_readme_dockerfile_line_has_a_trailing_comment() -> None:
    """Docker has no trailing comments: `COPY a b  # c` copies a file named `#`."""
    offenders = [
        f"{s.where}: {line.strip()}"
        for s in snippets(README)
        if s.kind == "dockerfile"
        for line in trailing_comments(s.text)
    ]
    assert offenders == []


def test_every_image_a_readme_dockerfile_uses_is_built_in_the_readme_or_the_base() -> None:
    """`FROM vault-inject:0.1.0` after `docker build -t vault-inject .` names an image the
    reader does not have."""
    built = images_built(README) | {BASE_IMAGE}
    assert "vault-inject:latest" in built
    used = {
        (s.where, full_name(image))
        for s in snippets(README)
        if s.kind == "dockerfile"
        for image in images_used(s.text)
    }
    assert used
    assert {(where, image) for where, image in used if image not in built} == set()


def test_trailing_comments_are_told_from_quoted_hashes_and_comment_lines() -> None:
    """COPY/ENV/RUN lines with `# ...` after them are found; a `#` inside quotes, a comment
    line and a RUN continuation line are not."""
    dockerfile = (
        "# a comment line\n"
        "FROM base\n"
        "COPY a.toml /app/  # picked up\n"
        "ENV X=1\t# why\n"
        'RUN echo "#1" \\\n'
        "  && echo done # here\n"
        "RUN echo '# fine'\n"
        'CMD ["sh", "-c", "echo #"]\n'
    )
    assert trailing_comments(dockerfile) == ["COPY a.toml /app/  # picked up", "ENV X=1\t# why"]


def test_images_used_are_froms_and_copy_froms_but_not_stages() -> None:
    """Stage names and ARG-substituted images are not images to have."""
    dockerfile = (
        "ARG BASE=python:3.12-slim\n"
        "FROM ${BASE} AS build\n"
        "FROM vault-inject AS inject\n"
        "FROM --platform=linux/amd64 debian:12\n"
        "COPY --from=build /a /a\n"
        "COPY --from=other:1 /b /b\n"
    )
    assert images_used(dockerfile) == ["vault-inject", "debian:12", "other:1"]
    assert images_built("docker build -t vault-inject .\ndocker build --tag=x:2 -f D .") == {
        "vault-inject:latest",
        "x:2",
    }


def test_contexts_have_what_the_snippets_copy(tmp_path: Path) -> None:
    """A Dockerfile gets a stand-in for each file and directory it copies from the context;
    a fragment becomes one service of a compose file."""
    dockerfile = Snippet(
        "dockerfile", 3, "FROM x\nCOPY inject.toml /app/\nCOPY api/ /app/api/\nCOPY --from=x /o /o\n"
    )
    built = write_context(dockerfile, tmp_path / "d")
    assert (built / "Dockerfile").read_text() == dockerfile.text
    assert (built / "inject.toml").is_file()
    assert (built / "api" / "stand-in.txt").is_file()
    assert not (built / "o").exists()
    fragment = Snippet("fragment", 9, "healthcheck:\n  test: [CMD, true]\n")
    compose = (write_context(fragment, tmp_path / "f") / "compose.yaml").read_text()
    assert "services:\n  snippet:\n    image: snippet\n    healthcheck:\n      test: [CMD, true]\n" in compose


def test_main_writes_one_directory_per_snippet(tmp_path: Path, capsys: object) -> None:
    """`python -m tests.readme_snippets README.md OUT` lists KIND DIR README.md:LINE."""
    readme = tmp_path / "README.md"
    readme.write_text(
        "```dockerfile\nFROM x\n```\n\n```yaml\nservices: {a: {image: x}}\n```\n```sh\nls\n```\n"
    )
    assert main([str(readme), str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["01-dockerfile", "02-compose"]
    assert main([]) == 2
