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


def test_the_cache_is_used_as_root_or_with_the_child_under_another_user() -> None:
    """A same-user child could write the cache: only root, or a child of another uid, uses it."""
    assert cachedir.usable(euid=0, child_uid=-1)
    assert cachedir.usable(euid=0, child_uid=0)
    assert cachedir.usable(euid=1000, child_uid=2000)
    assert not cachedir.usable(euid=1000, child_uid=-1)
    assert not cachedir.usable(euid=1000, child_uid=1000)


def test_a_symlink_anywhere_on_the_way_is_refused(tmp_path: Path) -> None:
    """The directory is reached without following a symlink: one in a parent, or the cache
    directory itself as a link, turns the cache off and creates nothing behind it."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    assert CompileCache.open(str(tmp_path / "link" / "vault-inject"), b"h") is None
    assert list(real.iterdir()) == []
    assert CompileCache.open(str(tmp_path / "link"), b"h") is None


def test_missing_components_are_created_private(tmp_path: Path) -> None:
    """Missing directories on the way are created 0700, the cache directory too."""
    cache = CompileCache.open(str(tmp_path / "home" / ".cache" / "vault-inject"), b"h")
    assert cache is not None
    for path in (
        tmp_path / "home",
        tmp_path / "home" / ".cache",
        tmp_path / "home" / ".cache" / "vault-inject",
    ):
        assert path.stat().st_mode & 0o777 == 0o700


def test_a_parent_others_can_write_is_refused(tmp_path: Path) -> None:
    """A group-writable directory on the way (not root's sticky /tmp) turns the cache off
    and nothing is created inside it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert CompileCache.open(str(shared / "vault-inject"), b"h") is None
    assert list(shared.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_nothing_is_created_in_another_users_home(tmp_path: Path) -> None:
    """HOME owned by another user (root running with the app's HOME): no cache, and no
    .cache directory made inside that home."""
    home = tmp_path / "app-home"
    home.mkdir(mode=0o755)
    os.chown(home, 4242, 4242)
    assert CompileCache.open(str(home / ".cache" / "vault-inject"), b"h") is None
    assert list(home.iterdir()) == []


def test_a_relative_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative INJECT_CACHE_DIR would depend on the working directory: no cache."""
    monkeypatch.chdir(tmp_path)
    assert CompileCache.open("cache", b"h") is None
    assert not (tmp_path / "cache").exists()


def test_a_damaged_entry_is_compiled_again(tmp_path: Path) -> None:
    """An entry cut short or with a flipped byte fails its digest: the template is compiled
    anew (the same output), never handed to marshal."""
    Renderer({}, cache=cache_in(tmp_path)).compile("app.tpl", SOURCE)
    (entry,) = tmp_path.iterdir()
    whole = entry.read_bytes()
    for damaged in (whole[:-7], whole[:40] + bytes([whole[40] ^ 0xFF]) + whole[41:]):
        entry.write_bytes(damaged)
        assert cache_in(tmp_path).load("app.tpl", SOURCE) is None
        renderer = Renderer({}, cache=cache_in(tmp_path))
        template = renderer.compile("app.tpl", SOURCE)
        assert renderer.render_one("app.tpl", template, ReadCache(Reader()))[0] == "pw u\n"


def test_code_that_fails_to_load_is_compiled_again(tmp_path: Path) -> None:
    """A well-formed entry whose code raises when loaded is a miss: the template is compiled."""
    cache = cache_in(tmp_path)
    cache.store("app.tpl", SOURCE, compile("raise RuntimeError('bad entry')", "app.tpl", "exec"), ())
    renderer = Renderer({}, cache=cache_in(tmp_path))
    template = renderer.compile("app.tpl", SOURCE)
    assert renderer.render_one("app.tpl", template, ReadCache(Reader()))[0] == "pw u\n"
    assert renderer.static_keys([template], []) == {KvRead("secret/app"), KvRead("secret/db", 2)}
