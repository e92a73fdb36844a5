"""The compile cache: a compiled template comes back only from a private directory, only for
the same name and source, and any unreadable or untrusted entry is a plain miss."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vault_inject.model import KvRead, Secret
from vault_inject.render import cachedir
from vault_inject.render.compilecache import CompileCache
from vault_inject.render.outputs import ReadCache
from vault_inject.render.renderer import Renderer

SOURCE = "{{ secret('secret/app').password }} {{ secret('secret/db', 2).user }}\n"


class Reader:
    """Answers every read with one secret."""

    def fetch(self, request: KvRead) -> Secret:
        return Secret(path=request.path, data={"password": "pw", "user": "u"}, version=request.version or 1)


def cache_in(directory: Path) -> CompileCache:
    cache = CompileCache.open(str(directory), b"test-header")
    assert cache is not None
    return cache


def test_a_cached_template_renders_like_a_compiled_one(tmp_path: Path) -> None:
    """The second Renderer loads the code the first stored: same output, same literal keys."""
    first = Renderer({}, cache=cache_in(tmp_path / "c"))
    compiled = first.compile("app.tpl", SOURCE)
    assert len(list((tmp_path / "c").iterdir())) == 1
    second = Renderer({}, cache=cache_in(tmp_path / "c"))
    loaded = second.compile("app.tpl", SOURCE)
    for renderer, template in ((first, compiled), (second, loaded)):
        assert renderer.render_one("app.tpl", template, ReadCache(Reader()))[0] == "pw u\n"
    assert (
        first.static_keys([compiled], [])
        == second.static_keys([loaded], [])
        == {
            KvRead("secret/app"),
            KvRead("secret/db", 2),
        }
    )


def test_another_source_or_name_or_header_is_a_miss(tmp_path: Path) -> None:
    """An entry is found only for the same header, name and source."""
    cache = cache_in(tmp_path)
    code = compile("x = 1", "app.tpl", "exec")
    cache.store("app.tpl", SOURCE, code, (("secret/app", None),))
    assert cache.load("app.tpl", SOURCE) is not None
    assert cache.load("app.tpl", SOURCE + " ") is None
    assert cache.load("other.tpl", SOURCE) is None
    other = CompileCache.open(str(tmp_path), b"another-header")
    assert other is not None
    assert other.load("app.tpl", SOURCE) is None


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    """A group- or world-writable cache directory turns the cache off."""
    for mode in (0o770, 0o707, 0o777):
        tmp_path.chmod(mode)
        assert CompileCache.open(str(tmp_path), b"h") is None
    tmp_path.chmod(0o700)
    assert CompileCache.open(str(tmp_path), b"h") is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_entries_of_another_owner_or_writable_by_others_are_misses(tmp_path: Path) -> None:
    """An entry owned by another uid, or group-writable, is never loaded."""
    cache = cache_in(tmp_path)
    cache.store("app.tpl", SOURCE, compile("x = 1", "app.tpl", "exec"), ())
    (entry,) = tmp_path.iterdir()
    os.chown(entry, 4242, 4242)
    assert cache.load("app.tpl", SOURCE) is None
    os.chown(entry, 0, 0)
    entry.chmod(0o620)
    assert cache.load("app.tpl", SOURCE) is None
    entry.chmod(0o600)
    assert cache.load("app.tpl", SOURCE) is not None


def test_a_corrupt_or_symlinked_entry_is_a_miss(tmp_path: Path) -> None:
    """Garbage and symlinks in place of an entry are misses, not errors."""
    cache = cache_in(tmp_path)
    cache.store("app.tpl", SOURCE, compile("x = 1", "app.tpl", "exec"), ())
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(b"\x00garbage")
    assert cache.load("app.tpl", SOURCE) is None
    entry.unlink()
    (tmp_path / "target").write_bytes(b"")
    entry.symlink_to(tmp_path / "target")
    assert cache.load("app.tpl", SOURCE) is None


def test_the_default_directory_follows_the_environment() -> None:
    """INJECT_CACHE_DIR wins (empty: no cache), then XDG_CACHE_HOME, then HOME/.cache."""
    assert cachedir.default_dir({"INJECT_CACHE_DIR": "/c", "HOME": "/h"}) == "/c"
    assert cachedir.default_dir({"INJECT_CACHE_DIR": "", "HOME": "/h"}) == ""
    assert cachedir.default_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == "/x/vault-inject"
    assert cachedir.default_dir({"HOME": "/h"}) == "/h/.cache/vault-inject"
    assert cachedir.default_dir({}) == ""
    assert CompileCache.open("", b"h") is None
