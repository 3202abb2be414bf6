"""The file walker, language detection, content checks and content hashes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hexahub.context.files import (
    IGNORED_DIRS,
    check_content,
    content_hash,
    git_blob_sha,
    language_for,
    walk,
)


def make(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


# --- languages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("src/app.py", "python"),
        ("web/index.js", "javascript"),
        ("web/App.tsx", "tsx"),
        ("lib/types.ts", "typescript"),
        ("main.go", "go"),
        ("src/lib.rs", "rust"),
        ("A.java", "java"),
        ("x.h", "c"),
        ("x.hpp", "cpp"),
        ("app.rb", "ruby"),
        ("index.php", "php"),
        ("deploy.sh", "bash"),
        ("ci.yml", "yaml"),
        ("README.md", "markdown"),
        ("flake.nix", "nix"),
        ("main.tf", "hcl"),
        ("pyproject.toml", "toml"),
        ("schema.sql", "sql"),
        ("data.json", "json"),
        ("site.css", "css"),
        ("page.html", "html"),
        ("Dockerfile", "dockerfile"),
        ("docker/Dockerfile.prod", "dockerfile"),
        ("Makefile", "makefile"),
        ("Gemfile", "ruby"),
        ("notes", "text"),
        ("LICENSE", "text"),
        ("SRC/APP.PY", "python"),
    ],
)
def test_language_by_name_and_extension(path: str, language: str) -> None:
    assert language_for(path) == language


@pytest.mark.parametrize(
    ("first_line", "language"),
    [
        ("#!/usr/bin/env python3", "python"),
        ("#!/usr/bin/python3.12 -u", "python"),
        ("#!/bin/bash", "bash"),
        ("#!/usr/bin/env -S node --no-warnings", "javascript"),
        ("#!/usr/bin/env ruby", "ruby"),
        ("#!/usr/bin/env something-else", "text"),
        ("print('no shebang')", "text"),
    ],
)
def test_language_from_shebang(first_line: str, language: str) -> None:
    assert language_for("bin/tool", first_line) == language


def test_extension_wins_over_shebang() -> None:
    assert language_for("tool.py", "#!/bin/bash") == "python"


# --- walking -------------------------------------------------------------------------------


def test_walk_lists_sorted_relative_posix_paths(tmp_path: Path) -> None:
    make(tmp_path, {"b.py": "", "a/z.py": "", "a/b/c.txt": "", "a.py": "", "a-b.py": ""})
    paths = list(walk(tmp_path))
    assert paths == sorted(paths)
    assert paths == ["a-b.py", "a.py", "a/b/c.txt", "a/z.py", "b.py"]


def test_walk_skips_vcs_and_builtin_ignored_dirs(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            ".git/config": "",
            ".hg/store": "",
            "node_modules/left-pad/index.js": "",
            "src/__pycache__/m.cpython-311.pyc": b"\0",
            ".venv/lib/x.py": "",
            "pkg.egg-info/PKG-INFO": "",
            "target/debug/app": "",
            "src/main.py": "",
        },
    )
    assert list(walk(tmp_path)) == ["src/main.py"]
    # The built-in list can be replaced, e.g. to index a vendored folder.
    assert "node_modules/left-pad/index.js" in list(walk(tmp_path, ignored_dirs=()))
    assert "node_modules" in IGNORED_DIRS


def test_walk_respects_nested_gitignore_files(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            ".gitignore": "*.log\n/secret.txt\ngenerated/\n# a comment\n",
            "app.log": "",
            "secret.txt": "",
            "keep.txt": "",
            "generated/out.py": "",
            "docs/secret.txt": "",  # `/secret.txt` is anchored to the root
            "sub/.gitignore": "*.tmp\n!important.log\n",
            "sub/a.tmp": "",
            "sub/important.log": "",  # re-included below sub/ only
            "sub/other.log": "",
            "other/a.tmp": "",  # sub/.gitignore does not apply here
            "sub/deeper/.gitignore": "!*.tmp\n",
            "sub/deeper/b.tmp": "",
        },
    )
    assert list(walk(tmp_path)) == [
        ".gitignore",
        "docs/secret.txt",
        "keep.txt",
        "other/a.tmp",
        "sub/.gitignore",
        "sub/deeper/.gitignore",
        "sub/deeper/b.tmp",
        "sub/important.log",
    ]


def test_walk_does_not_descend_into_ignored_dirs(tmp_path: Path) -> None:
    make(tmp_path, {".gitignore": "big/\n", "big/x/y.py": "", "ok.py": ""})
    visited: list[str] = []
    real_scandir = os.scandir

    def spying_scandir(path: str) -> object:
        visited.append(os.path.relpath(path, tmp_path))
        return real_scandir(path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "scandir", spying_scandir)
        assert list(walk(tmp_path)) == [".gitignore", "ok.py"]
    assert visited == ["."]


def test_walk_include_and_exclude_globs(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "src/a.py": "",
            "src/deep/b.py": "",
            "src/c.js": "",
            "tests/test_a.py": "",
            "setup.py": "",
        },
    )
    assert list(walk(tmp_path, include=["*.py"])) == [
        "setup.py",
        "src/a.py",
        "src/deep/b.py",
        "tests/test_a.py",
    ]
    assert list(walk(tmp_path, include=["src/**/*.py"])) == ["src/a.py", "src/deep/b.py"]
    assert list(walk(tmp_path, exclude=["tests/", "*.js"])) == [
        "setup.py",
        "src/a.py",
        "src/deep/b.py",
    ]
    assert list(walk(tmp_path, include=["src/**"], exclude=["**/deep/**"])) == [
        "src/a.py",
        "src/c.js",
    ]


def test_walk_symlinks_are_safe(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    outside = tmp_path / "outside"
    make(root, {"src/a.py": "x = 1\n"})
    make(outside, {"secret.py": "TOKEN = 1\n"})
    (root / "loop").symlink_to(root, target_is_directory=True)  # a loop
    (root / "src" / "up").symlink_to(root / "src", target_is_directory=True)
    (root / "out_dir").symlink_to(outside, target_is_directory=True)
    (root / "out_file.py").symlink_to(outside / "secret.py")
    (root / "alias.py").symlink_to(root / "src" / "a.py")
    (root / "dangling.py").symlink_to(root / "missing.py")
    assert list(walk(root)) == ["alias.py", "src/a.py"]


def test_walk_many_files(tmp_path: Path) -> None:
    for d in range(20):
        folder = tmp_path / f"pkg{d:03}"
        folder.mkdir()
        for f in range(100):
            (folder / f"m{f:03}.py").write_bytes(b"")
    make(tmp_path, {".gitignore": "*.pyc\nbuild/\n!keep.pyc\n"})
    paths = list(walk(tmp_path))
    assert len(paths) == 2_001
    assert paths[0] == ".gitignore" and paths[-1] == "pkg019/m099.py"


def test_walk_matches_git_check_ignore(tmp_path: Path) -> None:
    git = subprocess.run(["git", "--version"], capture_output=True, check=False)
    if git.returncode != 0:
        pytest.skip("git is not installed")
    make(
        tmp_path,
        {
            ".gitignore": "*.o\n/build-out\ncache/\n!keep.o\nlogs/**/*.txt\n",
            "a.o": "",
            "keep.o": "",
            "build-out": "",
            "src/build-out": "",
            "src/cache/x.py": "",
            "logs/a/b/c.txt": "",
            "logs/a.md": "",
            "src/lib/.gitignore": "*.py\n!main.py\n",
            "src/lib/x.py": "",
            "src/lib/main.py": "",
            "src/lib/readme.md": "",
        },
    )
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    listed = subprocess.run(
        ["git", "-C", str(tmp_path), "ls-files", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert list(walk(tmp_path)) == sorted(listed)


# --- content -------------------------------------------------------------------------------


def test_check_content_accepts_text() -> None:
    text, reason = check_content(
        "a.py", b"\xef\xbb\xbfprint('h\xc3\xa9')\r\nx = 1\r\n", max_bytes=100
    )
    assert reason is None
    assert text == "print('hé')\nx = 1\n"


def test_check_content_latin1_text_is_accepted() -> None:
    text, reason = check_content("notes.txt", "caf\xe9 cr\xe8me\n".encode("latin-1"), max_bytes=100)
    assert (text, reason) == ("café crème\n", None)


def test_check_content_binary() -> None:
    assert check_content("img.png", b"\x89PNG\r\n\x1a\n\0\0\0", max_bytes=100) == (None, "binary")
    noise = bytes(range(256)) * 4
    assert check_content("blob.dat", noise.replace(b"\0", b"\1"), max_bytes=10_000) == (
        None,
        "binary",
    )


def test_check_content_too_large() -> None:
    assert check_content("a.py", b"x" * 101, max_bytes=100) == (
        None,
        "too large (101 bytes > 100)",
    )


@pytest.mark.parametrize(
    "name",
    [
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "Cargo.lock",
        "uv.lock",
        "go.sum",
        "composer.lock",
        "Gemfile.lock",
        "sub/dir/Pipfile.lock",
    ],
)
def test_check_content_lockfiles(name: str) -> None:
    assert check_content(name, b"{}\n", max_bytes=100) == (None, "lockfile")


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("api.go", "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n"),
        ("schema.ts", "/**\n * @generated\n */\nexport type A = 1;\n"),
        ("client.py", "# This file was automatically generated by a tool.\nimport x\n"),
        ("config.h", "/* autogenerated by configure */\n#define X 1\n"),
        ("models.cs", "// <auto-generated>\nclass A {}\n"),
    ],
)
def test_check_content_generated_by_marker(name: str, head: str) -> None:
    assert check_content(name, head.encode(), max_bytes=10_000) == (None, "generated")


@pytest.mark.parametrize(
    "name", ["api_pb2.py", "api_pb2_grpc.py", "api.pb.go", "zz_generated.deepcopy.go"]
)
def test_check_content_generated_by_name(name: str) -> None:
    assert check_content(name, b"x = 1\n", max_bytes=100) == (None, "generated")


def test_check_content_marker_below_the_top_is_not_generated() -> None:
    body = "\n".join(f"x{i} = {i}" for i in range(30)) + "\n# autogenerated ids below\n"
    text, reason = check_content("a.py", body.encode(), max_bytes=10_000)
    assert reason is None and text == body


def test_check_content_minified() -> None:
    assert check_content("vendor.min.js", b"var a=1;\n", max_bytes=100) == (None, "minified")
    bundle = ("function a(){return 1}" * 100 + "\n").encode()
    assert check_content("bundle.js", bundle, max_bytes=100_000) == (None, "minified")
    css = (".a{color:red}" * 200).encode()
    assert check_content("site.css", css, max_bytes=100_000) == (None, "minified")
    # Ordinary JavaScript with normal lines is fine.
    ordinary = "".join(f"const v{i} = {i};\n" for i in range(200)).encode()
    assert check_content("app.js", ordinary, max_bytes=100_000)[1] is None


# --- hashing -------------------------------------------------------------------------------


def test_git_blob_sha_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_sha(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert content_hash(b"hello\n") == git_blob_sha(b"hello\n")
    assert content_hash(b"a") != content_hash(b"b")
