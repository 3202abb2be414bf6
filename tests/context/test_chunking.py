"""Chunking along definitions, symbols, and the line-window fallback."""

from __future__ import annotations

import sysconfig
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import hexahub.context.chunking as chunking
from hexahub.context.chunking import (
    MAX_CHUNK_CHARS,
    MAX_CHUNK_LINES,
    chunk_file,
    supported_languages,
)
from hexahub.context.types import Chunk, ParsedFile, Symbol


def parse(language: str, source: str, path: str = "sample") -> ParsedFile:
    text = textwrap.dedent(source).lstrip("\n")
    parsed = chunk_file(path, text, language)
    assert_well_formed(text, parsed)
    return parsed


def assert_well_formed(text: str, parsed: ParsedFile) -> None:
    """Exact line numbers, and every non-blank line in some chunk."""
    lines = text.split("\n")
    covered = [False] * len(lines)
    for chunk in parsed.chunks:
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines), chunk
        assert chunk.text == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        assert chunk.text.strip(), chunk
        for i in range(chunk.start_line - 1, chunk.end_line):
            covered[i] = True
    missing = [i + 1 for i, line in enumerate(lines) if line.strip() and not covered[i]]
    assert not missing, f"lines in no chunk: {missing[:20]}"
    for symbol in parsed.symbols:
        assert 1 <= symbol.start_line <= symbol.end_line <= len(lines), symbol


def symbol(parsed: ParsedFile, name: str, container: str | None = None) -> Symbol:
    found = [s for s in parsed.symbols if s.name == name and s.container == container]
    assert len(found) == 1, (name, container, parsed.symbols)
    return found[0]


def chunk_for(parsed: ParsedFile, qualified: str) -> Chunk:
    found = [c for c in parsed.chunks if c.symbol == qualified]
    assert found, (qualified, [(c.kind, c.symbol) for c in parsed.chunks])
    return found[0]


def signatures(parsed: ParsedFile) -> dict[str, str]:
    return {
        (f"{s.container}." if s.container else "") + s.name: s.signature for s in parsed.symbols
    }


# --- Python --------------------------------------------------------------------------------

PYTHON = '''
"""HTTP client."""

import os
from typing import Any

MAX_REDIRECTS = 20
default_timeout = 5.0


# Sends requests.
@dataclass
class Client(BaseClient):
    """A client."""

    retries: int = 3

    def send(self, request, *, stream=False, auth=None) -> Response:
        """Send one request."""
        def helper():
            return 1
        return self._transport.handle(request)

    @property
    def closed(self) -> bool:
        return self._closed


def main() -> None:
    Client().send(None)


if __name__ == "__main__":
    main()
'''


def test_python_symbols() -> None:
    parsed = parse("python", PYTHON, "src/client.py")
    assert parsed.language == "python"
    client = symbol(parsed, "Client")
    # A symbol starts at its decorators; its chunk also takes the comment above.
    assert (client.kind, client.start_line, client.end_line) == ("class", 11, 25)
    assert client.signature == "class Client(BaseClient)"
    send = symbol(parsed, "send", "Client")
    assert (send.kind, send.start_line, send.end_line) == ("method", 17, 21)
    assert send.signature == "def send(self, request, *, stream=False, auth=None) -> Response"
    closed = symbol(parsed, "closed", "Client")
    assert (closed.kind, closed.start_line, closed.end_line) == ("method", 23, 25)
    assert symbol(parsed, "helper", "Client.send").kind == "function"
    main = symbol(parsed, "main")
    assert (main.kind, main.start_line, main.end_line) == ("function", 28, 29)
    constant = symbol(parsed, "MAX_REDIRECTS")
    assert (constant.kind, constant.start_line) == ("constant", 6)
    assert not [s for s in parsed.symbols if s.name == "default_timeout"]


def test_python_chunks_follow_definitions() -> None:
    parsed = parse("python", PYTHON, "src/client.py")
    kinds = [(c.kind, c.symbol, c.start_line, c.end_line) for c in parsed.chunks]
    assert kinds == [
        ("block", None, 1, 7),  # docstring, imports, constants: one block
        ("class", "Client", 10, 25),  # the comment and decorator above belong to it
        ("function", "main", 28, 29),
        ("block", None, 32, 33),
    ]
    client = chunk_for(parsed, "Client")
    assert client.context == "path: src/client.py\nclass Client(BaseClient)"
    assert client.text.startswith("# Sends requests.\n@dataclass\nclass Client")


def big_python_class(methods: int = 12, body_lines: int = 6) -> str:
    parts = ['class Service(Base):\n    """Does things."""\n\n    name = "svc"\n']
    for m in range(methods):
        body = "".join(f"        total += {i} * {m}\n" for i in range(body_lines))
        parts.append(f"\n    @traced\n    def step_{m}(self, total: int = 0) -> int:\n{body}")
        parts.append("        return total\n")
    return "import os\n\n\n" + "".join(parts)


def test_python_big_class_becomes_header_plus_methods() -> None:
    parsed = parse("python", big_python_class(), "svc.py")
    header = chunk_for(parsed, "Service")
    assert header.kind == "class"
    assert header.text.splitlines()[0] == "class Service(Base):"
    assert 'name = "svc"' in header.text and "def step_0" not in header.text
    for m in range(12):
        chunk = chunk_for(parsed, f"Service.step_{m}")
        assert chunk.kind == "method"
        assert chunk.text.lstrip().startswith("@traced")
        assert chunk.context == (
            f"path: svc.py\nclass Service(Base)\ndef step_{m}(self, total: int = 0) -> int"
        )
        assert symbol(parsed, f"step_{m}", "Service").kind == "method"


def test_python_small_class_is_one_chunk() -> None:
    parsed = parse("python", big_python_class(methods=2, body_lines=2), "svc.py")
    assert [c.symbol for c in parsed.chunks] == [None, "Service"]


def test_big_definition_is_split_into_windows_with_the_same_context() -> None:
    body = "".join(
        f"    value_{i} = compute({i})\n" + ("\n" if i % 10 == 9 else "") for i in range(150)
    )
    source = f"def huge(a, b):\n{body}    return a\n"
    parsed = parse("python", source, "big.py")
    assert len(parsed.chunks) >= 3
    for chunk in parsed.chunks:
        assert (chunk.kind, chunk.symbol) == ("function", "huge")
        assert chunk.context == "path: big.py\ndef huge(a, b)"
        assert chunk.end_line - chunk.start_line + 1 <= MAX_CHUNK_LINES
        assert len(chunk.text) <= MAX_CHUNK_CHARS
    starts = [c.start_line for c in parsed.chunks]
    assert starts == sorted(starts) and starts[0] == 1
    assert parsed.chunks[-1].end_line == source.count("\n")
    huge = symbol(parsed, "huge")
    assert (huge.start_line, huge.end_line) == (1, source.count("\n"))


def test_many_small_definitions_do_not_make_many_tiny_chunks() -> None:
    accessors = "".join(f"    def get_{i}(self):\n        return self._{i}\n\n" for i in range(60))
    parsed = parse("python", f"class Record:\n{accessors}", "record.py")
    assert len(parsed.symbols) == 61
    assert len(parsed.chunks) <= 6


# --- JavaScript, TypeScript ----------------------------------------------------------------

JAVASCRIPT = """
import { api } from "./api.js";

/** Loads users. */
export async function loadUsers(page = 1) {
  const res = await api.get(`/users?page=${page}`);
  return res.data;
}

export class UserStore extends Store {
  constructor(api) {
    super();
    this.api = api;
  }

  async refresh() {
    this.users = await loadUsers();
  }
}

const format = (user) => `${user.first} ${user.last}`;

module.exports.helper = function () {
  return 1;
};
"""


def test_javascript() -> None:
    parsed = parse("javascript", JAVASCRIPT, "web/users.js")
    load = symbol(parsed, "loadUsers")
    assert (load.kind, load.start_line, load.end_line) == ("function", 4, 7)
    assert load.signature == "export async function loadUsers(page = 1)"
    store = symbol(parsed, "UserStore")
    assert (store.kind, store.start_line, store.end_line) == ("class", 9, 18)
    assert symbol(parsed, "constructor", "UserStore").kind == "method"
    assert symbol(parsed, "refresh", "UserStore").start_line == 15
    fmt = symbol(parsed, "format")
    assert (fmt.kind, fmt.start_line) == ("function", 20)
    assert symbol(parsed, "helper").kind == "function"
    chunk = chunk_for(parsed, "loadUsers")
    assert (chunk.start_line, chunk.end_line) == (3, 7)  # with its doc comment
    assert chunk.context == "path: web/users.js\nexport async function loadUsers(page = 1)"


TYPESCRIPT = """
import { x } from "y";

/** Greeter greets. */
export class Greeter<T> extends Base implements Named {
  private name: string;
  constructor(name: string) {
    this.name = name;
  }
  greet(): string {
    return "hi " + this.name;
  }
}

export interface Options {
  verbose: boolean;
}

export type Id = string | number;

enum Color {
  Red,
  Green,
}

namespace Util {
  export function clamp(v: number): number {
    return v;
  }
}

export const handler = async (req: Request): Promise<void> => {
  await run(req);
};
"""


def test_typescript() -> None:
    parsed = parse("typescript", TYPESCRIPT, "src/app.ts")
    expected = {
        "Greeter": ("class", 4, 12),
        "Options": ("interface", 14, 16),
        "Id": ("type", 18, 18),
        "Color": ("enum", 20, 23),
        "Util": ("module", 25, 29),
        "handler": ("function", 31, 33),
    }
    for name, (kind, start, end) in expected.items():
        s = symbol(parsed, name)
        assert (s.kind, s.start_line, s.end_line) == (kind, start, end), name
    assert symbol(parsed, "greet", "Greeter").kind == "method"
    assert symbol(parsed, "clamp", "Util").kind == "function"
    assert signatures(parsed)["Greeter"] == "export class Greeter<T> extends Base implements Named"
    assert chunk_for(parsed, "Greeter").start_line == 3
    assert [c.symbol for c in parsed.chunks if c.kind != "block"] == list(expected)


def test_tsx() -> None:
    parsed = parse(
        "tsx",
        """
        type Props = { name: string };

        export function Hello({ name }: Props) {
          return <div className="hello">Hello {name}</div>;
        }

        export const Counter = () => {
          const [n, setN] = useState(0);
          return <button onClick={() => setN(n + 1)}>{n}</button>;
        };
        """,
    )
    assert symbol(parsed, "Hello").start_line == 3
    assert symbol(parsed, "Counter").kind == "function"
    assert chunk_for(parsed, "Counter").text.startswith("export const Counter")


# --- Go, Rust, Java, C, C++ ----------------------------------------------------------------

GO = """
package server

import "net/http"

// Server serves HTTP.
type Server struct {
	Addr string
}

type Handler interface {
	Serve(w http.ResponseWriter) error
}

// Start starts listening.
func (s *Server) Start(port int) error {
	return http.ListenAndServe(s.Addr, nil)
}

func New(addr string) *Server {
	return &Server{Addr: addr}
}
"""


def test_go() -> None:
    parsed = parse("go", GO, "server.go")
    assert (symbol(parsed, "Server").kind, symbol(parsed, "Server").start_line) == ("struct", 6)
    assert symbol(parsed, "Handler").kind == "interface"
    start = symbol(parsed, "Start", "Server")
    assert (start.kind, start.start_line, start.end_line) == ("method", 15, 17)
    assert start.signature == "func (s *Server) Start(port int) error"
    assert symbol(parsed, "New").kind == "function"
    chunk = chunk_for(parsed, "Server.Start")
    assert (chunk.start_line, chunk.kind) == (14, "method")
    assert chunk_for(parsed, "Server").text.startswith("// Server serves HTTP.\ntype Server")


RUST = """
use std::fmt;

/// A point in the plane.
#[derive(Debug, Clone)]
pub struct Point {
    x: i32,
    y: i32,
}

pub enum Shape {
    Circle(f64),
    Square(f64),
}

pub trait Area {
    fn area(&self) -> f64;
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "({}, {})", self.x, self.y)
    }
}

mod geometry {
    pub fn origin() -> Point {
        Point { x: 0, y: 0 }
    }
}
"""


def test_rust() -> None:
    parsed = parse("rust", RUST, "src/lib.rs")
    assert [s.kind for s in parsed.symbols if s.name == "Point"] == ["struct", "impl"]
    assert symbol(parsed, "Shape").kind == "enum"
    assert symbol(parsed, "Area").kind == "trait"
    impl = [s for s in parsed.symbols if s.kind == "impl"]
    assert [(s.name, s.signature, s.start_line) for s in impl] == [
        ("Point", "impl fmt::Display for Point", 19)
    ]
    fmt = symbol(parsed, "fmt", "Point")
    assert (fmt.kind, fmt.start_line, fmt.end_line) == ("method", 20, 22)
    assert symbol(parsed, "geometry").kind == "module"
    assert symbol(parsed, "origin", "geometry").kind == "function"
    point = chunk_for(parsed, "Point")
    assert point.start_line == 3 and point.text.splitlines()[1] == "#[derive(Debug, Clone)]"


JAVA = """
package com.example;

import java.util.List;

/** Stores things. */
@Service
public class Repo<T> extends Base implements Store {
    private final int size;

    public Repo(int size) {
        this.size = size;
    }

    @Override
    public List<T> find(String query) throws IOException {
        return List.of();
    }

    interface Listener {
        void changed();
    }

    enum Mode { READ, WRITE }
}
"""


def test_java() -> None:
    parsed = parse("java", JAVA, "Repo.java")
    repo = symbol(parsed, "Repo")
    assert (repo.kind, repo.start_line, repo.end_line) == ("class", 6, 24)
    assert repo.signature == "public class Repo<T> extends Base implements Store"
    assert symbol(parsed, "Repo", "Repo").kind == "method"  # the constructor
    find = symbol(parsed, "find", "Repo")
    assert (find.kind, find.start_line, find.end_line) == ("method", 14, 17)
    assert find.signature == "public List<T> find(String query) throws IOException"
    assert symbol(parsed, "Listener", "Repo").kind == "interface"
    assert symbol(parsed, "Mode", "Repo").kind == "enum"
    assert chunk_for(parsed, "Repo").start_line == 5


C_SOURCE = """
#include <stdio.h>

/* A list node. */
struct node {
    int value;
    struct node *next;
};

typedef struct {
    int a, b;
} pair_t;

enum color { RED, GREEN };

static int add(int a, int b)
{
    return a + b;
}

char *name_of(struct node *n) {
    return NULL;
}
"""


def test_c() -> None:
    parsed = parse("c", C_SOURCE, "list.c")
    node = symbol(parsed, "node")
    assert (node.kind, node.start_line, node.end_line) == ("struct", 4, 7)
    assert symbol(parsed, "pair_t").kind == "struct"
    assert symbol(parsed, "color").kind == "enum"
    add = symbol(parsed, "add")
    assert (add.kind, add.start_line, add.end_line, add.signature) == (
        "function",
        15,
        18,
        "static int add(int a, int b)",
    )
    assert symbol(parsed, "name_of").kind == "function"
    assert chunk_for(parsed, "node").start_line == 3


CPP = """
#include <vector>

namespace app {

template <typename T>
class Box : public Base {
public:
    explicit Box(T v) : v_(v) {}
    T get() const {
        return v_;
    }
private:
    T v_;
};

int Widget::draw(int x) const {
    return x;
}

}  // namespace app
"""


def test_cpp() -> None:
    parsed = parse("cpp", CPP, "box.cpp")
    assert symbol(parsed, "app").kind == "module"
    box = symbol(parsed, "Box", "app")
    assert (box.kind, box.start_line, box.end_line) == ("class", 5, 14)
    assert box.signature == "template <typename T> class Box : public Base"
    assert symbol(parsed, "get", "app.Box").kind == "method"
    draw = symbol(parsed, "draw", "app.Widget")
    assert (draw.kind, draw.start_line) == ("method", 16)


# --- Ruby, PHP, Bash -----------------------------------------------------------------------

RUBY = """
require "json"

module Shop
  # A shopping cart.
  class Cart < Base
    attr_reader :items

    def initialize(items = [])
      @items = items
    end

    def self.empty
      new([])
    end
  end
end

def helper(x)
  x * 2
end
"""


def test_ruby() -> None:
    parsed = parse("ruby", RUBY, "cart.rb")
    assert symbol(parsed, "Shop").kind == "module"
    cart = symbol(parsed, "Cart", "Shop")
    assert (cart.kind, cart.start_line, cart.end_line) == ("class", 5, 15)
    assert cart.signature == "class Cart < Base"
    init = symbol(parsed, "initialize", "Shop.Cart")
    assert (init.kind, init.start_line, init.end_line) == ("method", 8, 10)
    assert symbol(parsed, "empty", "Shop.Cart").kind == "method"
    assert symbol(parsed, "helper").kind == "function"


PHP = """
<?php
namespace App\\Models;

/**
 * A user.
 */
class User extends Model
{
    protected $table = 'users';

    public function name(): string
    {
        return $this->name;
    }
}

interface Authenticatable
{
    public function id(): int;
}

trait HasRoles
{
    public function roles(): array { return []; }
}

function helper($x) { return $x; }
"""


def test_php() -> None:
    parsed = parse("php", PHP, "User.php")
    user = symbol(parsed, "User")
    assert (user.kind, user.start_line, user.end_line) == ("class", 7, 15)
    name = symbol(parsed, "name", "User")
    assert (name.kind, name.start_line, name.signature) == (
        "method",
        11,
        "public function name(): string",
    )
    assert symbol(parsed, "Authenticatable").kind == "interface"
    assert symbol(parsed, "HasRoles").kind == "trait"
    assert symbol(parsed, "helper").kind == "function"
    assert chunk_for(parsed, "User").start_line == 4


BASH = """
#!/usr/bin/env bash
set -euo pipefail

# Logs a line.
log() {
  echo "$(date) $*"
}

function deploy {
  log "deploying $1"
  rsync -a build/ "$1:/srv"
}

deploy "${1:-prod}"
"""


def test_bash() -> None:
    parsed = parse("bash", BASH, "deploy.sh")
    log_fn = symbol(parsed, "log")
    assert (log_fn.kind, log_fn.start_line, log_fn.end_line) == ("function", 5, 7)
    assert symbol(parsed, "deploy").start_line == 9
    kinds = [(c.kind, c.symbol, c.start_line, c.end_line) for c in parsed.chunks]
    assert kinds == [
        ("block", None, 1, 2),
        ("function", "log", 4, 7),
        ("function", "deploy", 9, 12),
        ("block", None, 14, 14),
    ]


# --- documents and configuration -----------------------------------------------------------


def markdown_document() -> str:
    para = "".join(f"Sentence {i} about installing the tool on a machine.\n" for i in range(30))
    return (
        "Intro paragraph.\n\n# Guide\n\nWelcome.\n\n## Install\n\n"
        + para
        + "\n```sh\n# not a heading\npip install tool\n```\n\n### From source\n\n"
        + para
        + "\n## Usage\n\nRun `tool`.\n"
    )


def test_markdown_sections() -> None:
    text = markdown_document()
    parsed = parse("markdown", text, "docs/guide.md")
    guide = symbol(parsed, "Guide")
    assert (guide.kind, guide.start_line, guide.signature) == ("heading", 3, "# Guide")
    install = symbol(parsed, "Install", "Guide")
    assert install.start_line == 7
    source = symbol(parsed, "From source", "Guide.Install")
    assert source.start_line == text.split("\n").index("### From source") + 1
    assert symbol(parsed, "Usage", "Guide").start_line > source.end_line
    assert not [s for s in parsed.symbols if "not a heading" in s.name]
    sub = chunk_for(parsed, "Guide.Install.From source")
    assert sub.kind == "section"
    assert sub.context == "path: docs/guide.md\n# Guide\n## Install\n### From source"
    assert all(c.kind == "section" or c.kind == "block" for c in parsed.chunks)


def test_markdown_small_sections_are_grouped() -> None:
    sections = "".join(f"## 1.{i}.0\n\n- fixed bug {i}\n\n" for i in range(40))
    parsed = parse("markdown", "# Changelog\n\n" + sections, "CHANGELOG.md")
    assert len(parsed.symbols) == 41
    assert 1 < len(parsed.chunks) <= 8


def test_yaml_top_level_keys() -> None:
    steps = "".join(f"      - run: step {i}\n" for i in range(10))
    source = f"""
# CI
name: ci
on:
  push:
    branches: [main]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
{steps}"""
    parsed = parse("yaml", source, ".github/workflows/ci.yml")
    assert [(s.name, s.kind, s.start_line) for s in parsed.symbols] == [
        ("name", "key", 2),
        ("on", "key", 3),
        ("jobs", "key", 6),
    ]
    assert {c.kind for c in parsed.chunks} == {"section"}


def test_yaml_big_key_is_its_own_chunk() -> None:
    items = "".join(f"  item_{i}: value {i}\n" for i in range(80))
    parsed = parse("yaml", f"version: 1\nitems:\n{items}tail: true\n", "big.yaml")
    items_chunks = [c for c in parsed.chunks if c.symbol == "items"]
    assert len(items_chunks) >= 2
    assert all(c.context == "path: big.yaml\nitems" for c in items_chunks)


HCL = """
terraform {
  required_version = ">= 1.5"
}

# The web server.
resource "aws_instance" "web" {
  ami           = data.aws_ami.ubuntu.id
  instance_type = var.size

  lifecycle {
    create_before_destroy = true
  }
}

variable "size" {
  type    = string
  default = "t3.micro"
}

module "vpc" {
  source = "./vpc"
}
"""


def test_hcl_blocks() -> None:
    parsed = parse("hcl", HCL, "main.tf")
    assert [(s.kind, s.name, s.start_line, s.end_line) for s in parsed.symbols] == [
        ("terraform", "terraform", 1, 3),
        ("resource", "aws_instance.web", 6, 13),
        ("variable", "size", 15, 18),
        ("module", "vpc", 20, 22),
    ]
    assert symbol(parsed, "aws_instance.web").signature == 'resource "aws_instance" "web"'


def test_hcl_big_blocks_are_separate_chunks() -> None:
    attrs = "".join(f'  tag_{i} = "{i}"\n' for i in range(20))
    source = "".join(f'resource "aws_s3_bucket" "b{n}" {{\n{attrs}}}\n\n' for n in range(3))
    parsed = parse("hcl", source, "buckets.tf")
    assert [c.symbol for c in parsed.chunks] == [
        "aws_s3_bucket.b0",
        "aws_s3_bucket.b1",
        "aws_s3_bucket.b2",
    ]
    assert parsed.chunks[1].context == 'path: buckets.tf\nresource "aws_s3_bucket" "b1"'


NIX = """
{ pkgs, lib, ... }:

let
  port = 8080;
in
{
  # The web service.
  services.nginx = {
    enable = true;
    virtualHosts."example.org" = {
      root = "/srv/www";
    };
  };

  environment.systemPackages = with pkgs; [ git vim ];
  networking.firewall.allowedTCPPorts = [ port ];
}
"""


def test_nix_bindings() -> None:
    parsed = parse("nix", NIX, "configuration.nix")
    nginx = symbol(parsed, "services.nginx")
    assert (nginx.kind, nginx.start_line, nginx.end_line) == ("attribute", 8, 13)
    assert symbol(parsed, "enable", "services.nginx").start_line == 9
    assert symbol(parsed, "environment.systemPackages").start_line == 15
    assert symbol(parsed, "port").start_line == 4


def test_nix_big_attrset_is_split_by_bindings() -> None:
    services = "".join(
        f"  services.svc{n} = {{\n" + "".join(f"    opt{i} = {i};\n" for i in range(15)) + "  };\n"
        for n in range(6)
    )
    parsed = parse("nix", "{ config, ... }:\n{\n" + services + "}\n", "big.nix")
    symbols = {c.symbol for c in parsed.chunks}
    assert {f"services.svc{n}" for n in range(6)} <= symbols
    assert all(c.end_line - c.start_line + 1 <= MAX_CHUNK_LINES for c in parsed.chunks)


def test_toml_tables() -> None:
    parsed = parse(
        "toml",
        '[project]\nname = "x"\n\n[tool.ruff]\nline-length = 100\n\n[[bin]]\nname = "y"\n',
        "pyproject.toml",
    )
    assert [s.name for s in parsed.symbols] == ["project", "tool.ruff", "bin"]


# --- fallback, robustness, threads ---------------------------------------------------------


def test_fallback_windows_for_text() -> None:
    paragraphs = "".join(
        "".join(f"line {p}.{i} of the notes\n" for i in range(7)) + "\n" for p in range(30)
    )
    parsed = parse("text", paragraphs, "NOTES")
    assert parsed.symbols == []
    assert all(c.kind == "window" and c.context == "path: NOTES" for c in parsed.chunks)
    sizes = [c.end_line - c.start_line + 1 for c in parsed.chunks]
    assert 4 <= len(sizes) <= 8
    assert all(size <= MAX_CHUNK_LINES for size in sizes)
    # Windows overlap a little or end at a paragraph break.
    for before, after in zip(parsed.chunks, parsed.chunks[1:], strict=False):
        assert after.start_line <= before.end_line + 2


def test_windows_respect_the_character_limit() -> None:
    lines = "".join(f"{i:04} " + "x" * 300 + "\n" for i in range(100))
    parsed = parse("text", lines, "wide.txt")
    assert all(len(c.text) <= MAX_CHUNK_CHARS for c in parsed.chunks)


def test_unknown_language_uses_windows() -> None:
    parsed = parse("sql", "SELECT 1;\n" * 130, "q.sql")
    assert parsed.language == "sql"
    assert len(parsed.chunks) >= 3 and {c.kind for c in parsed.chunks} == {"window"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n\n",
        "def broken(:\n    return )))\nclass\n",
        "x" * 10_000,
        "\0\x01\x02 binary-ish \ufffd\n" * 50,
        "def f():\n" + "    if x:\n" * 400,
        "\u2028weird\u2029separators\x0bhere\nend\n",
    ],
)
def test_odd_input_never_raises(text: str) -> None:
    for language in [*sorted(supported_languages()), "text"]:
        parsed = chunk_file("odd", text, language)
        assert_well_formed(text, parsed)


def test_parse_failure_falls_back_to_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(grammar: str) -> object:
        raise RuntimeError("no grammar")

    monkeypatch.setattr(chunking, "_parser", broken)
    parsed = parse("python", PYTHON, "x.py")
    assert parsed.symbols == [] and {c.kind for c in parsed.chunks} == {"window"}


def test_thread_safe() -> None:
    samples = [
        ("python", PYTHON),
        ("go", GO),
        ("rust", RUST),
        ("java", JAVA),
        ("typescript", TYPESCRIPT),
        ("markdown", markdown_document()),
        ("python", big_python_class()),
    ] * 8
    expected = [chunk_file("f", text, language) for language, text in samples]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda s: chunk_file("f", s[1], s[0]), samples))
    assert got == expected


# --- real files ----------------------------------------------------------------------------


def real_python_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    purelib = Path(sysconfig.get_paths()["purelib"])
    files = sorted(stdlib.glob("*.py")) + sorted((stdlib / "email").glob("*.py"))
    for package in ("httpx", "attr", "attrs", "pathspec", "pydantic"):
        files += sorted((purelib / package).rglob("*.py"))
    return files


def test_every_line_is_covered_in_real_python_files() -> None:
    files = real_python_files()
    assert len(files) > 100
    symbols = 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        parsed = chunk_file(str(path), text, "python")
        try:
            assert_well_formed(text, parsed)
        except AssertionError as e:
            raise AssertionError(f"{path}: {e}") from e
        for chunk in parsed.chunks:
            size = chunk.end_line - chunk.start_line + 1
            # Closing lines folded into the chunk before them may pass the limit slightly;
            # a single very long line may pass the character limit.
            assert size <= MAX_CHUNK_LINES + 2, (path, chunk.start_line, size)
            assert size <= 2 or len(chunk.text) <= MAX_CHUNK_CHARS + 300, (path, chunk.start_line)
        symbols += len(parsed.symbols)
    assert symbols > 5000
