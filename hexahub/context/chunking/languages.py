"""What counts as a definition in each language: tree-sitter queries plus a few rules.

Each query captures a definition node as `@def.<kind>` and its name as `@name`; a
`@container` capture names the type a definition belongs to when the tree does not nest it
(a Go method's receiver). Nesting (methods in classes, sections in sections) comes from the
nodes' ranges, not from the queries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Kinds whose functions are methods.
CLASS_KINDS = frozenset({"class", "struct", "interface", "trait", "impl", "enum"})

# Kinds listed as symbols but never chunked on their own (they stay in the blocks).
SYMBOL_ONLY_KINDS = frozenset({"constant"})

# Refines a captured definition: (node, kind, name) -> (kind, name), or None to drop it.
Refine = Callable[[Any, str, str], "tuple[str, str] | None"]

_C_LIKE_COMMENTS = ("//", "/*", "*", "*/")
_HASH_COMMENTS = ("#",)


@dataclass(frozen=True)
class LanguageSpec:
    grammar: str  # tree-sitter-language-pack name
    query: str
    # Line prefixes of the comments (and attributes) that belong to the definition below.
    comment_prefixes: tuple[str, ...] = _C_LIKE_COMMENTS
    # Parent node types that carry a definition's decorations (decorators, `export`,
    # `template <...>`): the definition's lines start where they start.
    wrappers: frozenset[str] = frozenset()
    # Wrappers that count only when the definition is their single named child.
    single_wrappers: frozenset[str] = frozenset()
    # Kinds inside which a function is a method.
    method_containers: frozenset[str] = CLASS_KINDS
    # Documents and configuration: definitions are "section" chunks, and neighbouring small
    # ones are grouped so a file of one-line settings does not become one chunk per line.
    declarative: bool = False
    max_depth: int | None = None  # deeper definitions are ignored
    refine: Refine | None = None
    # Child node types skipped when finding where a signature starts (decorators, ...).
    signature_skip: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {"decorator", "attribute_item", "marker_annotation", "annotation", "attribute_list"}
        )
    )


def _text(node: Any) -> str:
    return bytes(node.text or b"").decode("utf-8", "replace")


# --- Python ------------------------------------------------------------------------------

_CONSTANT_NAME = re.compile(r"^_*[A-Z][A-Z0-9_]*$")


def _python_refine(node: Any, kind: str, name: str) -> tuple[str, str] | None:
    if kind == "constant" and not _CONSTANT_NAME.match(name):
        return None
    return kind, name


PYTHON = LanguageSpec(
    grammar="python",
    query="""
(function_definition name: (identifier) @name) @def.function
(class_definition name: (identifier) @name) @def.class
(module (expression_statement (assignment left: (identifier) @name) @def.constant))
(module (assignment left: (identifier) @name) @def.constant)
""",
    comment_prefixes=_HASH_COMMENTS,
    wrappers=frozenset({"decorated_definition"}),
    refine=_python_refine,
)

# --- JavaScript / TypeScript ---------------------------------------------------------------

_JS_QUERY = """
(function_declaration name: (_) @name) @def.function
(generator_function_declaration name: (_) @name) @def.function
(class_declaration name: (_) @name) @def.class
(method_definition name: (_) @name) @def.method
(lexical_declaration
  (variable_declarator
    name: (identifier) @name
    value: [(arrow_function) (function_expression) (generator_function) (class)])) @def.function
(variable_declaration
  (variable_declarator
    name: (identifier) @name
    value: [(arrow_function) (function_expression) (generator_function) (class)])) @def.function
(expression_statement
  (assignment_expression
    left: (member_expression property: (property_identifier) @name)
    right: [(arrow_function) (function_expression)])) @def.function
"""

_TS_QUERY = (
    _JS_QUERY
    + """
(abstract_class_declaration name: (_) @name) @def.class
(interface_declaration name: (_) @name) @def.interface
(enum_declaration name: (_) @name) @def.enum
(type_alias_declaration name: (_) @name) @def.type
(internal_module name: (_) @name) @def.module
(module name: (_) @name) @def.module
(abstract_method_signature name: (_) @name) @def.method
"""
)


def _js_refine(node: Any, kind: str, name: str) -> tuple[str, str] | None:
    # `const Foo = class {...}` is a class, not a function.
    if node.type in ("lexical_declaration", "variable_declaration"):
        for declarator in node.named_children:
            value = declarator.child_by_field_name("value")
            if value is not None and value.type == "class":
                return "class", name
    return kind, name


_JS_WRAPPERS = frozenset({"export_statement"})

JAVASCRIPT = LanguageSpec(
    grammar="javascript", query=_JS_QUERY, wrappers=_JS_WRAPPERS, refine=_js_refine
)
TYPESCRIPT = LanguageSpec(
    grammar="typescript",
    query=_TS_QUERY,
    wrappers=_JS_WRAPPERS | {"ambient_declaration"},
    single_wrappers=frozenset({"expression_statement"}),
    refine=_js_refine,
)
TSX = LanguageSpec(
    grammar="tsx",
    query=_TS_QUERY,
    wrappers=TYPESCRIPT.wrappers,
    single_wrappers=TYPESCRIPT.single_wrappers,
    refine=_js_refine,
)

# --- Go ----------------------------------------------------------------------------------


GO = LanguageSpec(
    grammar="go",
    query="""
(function_declaration name: (identifier) @name) @def.function
(method_declaration
  receiver: (parameter_list (parameter_declaration type: (_) @container))
  name: (field_identifier) @name) @def.method
(type_spec name: (type_identifier) @name type: (struct_type)) @def.struct
(type_spec name: (type_identifier) @name type: (interface_type)) @def.interface
(type_spec name: (type_identifier) @name
  type: [(type_identifier) (qualified_type) (function_type) (map_type) (slice_type)
         (pointer_type) (channel_type) (generic_type) (array_type)]) @def.type
(type_alias name: (type_identifier) @name) @def.type
""",
    single_wrappers=frozenset({"type_declaration"}),
)

# --- Rust --------------------------------------------------------------------------------

RUST = LanguageSpec(
    grammar="rust",
    query="""
(function_item name: (_) @name) @def.function
(struct_item name: (_) @name) @def.struct
(union_item name: (_) @name) @def.struct
(enum_item name: (_) @name) @def.enum
(trait_item name: (_) @name) @def.trait
(impl_item type: (_) @name) @def.impl
(mod_item name: (_) @name body: (_)) @def.module
(macro_definition name: (_) @name) @def.macro
(type_item name: (_) @name) @def.type
(const_item name: (_) @name) @def.constant
(static_item name: (_) @name) @def.constant
""",
    comment_prefixes=(*_C_LIKE_COMMENTS, "#["),
)

# --- Java --------------------------------------------------------------------------------

JAVA = LanguageSpec(
    grammar="java",
    query="""
(class_declaration name: (_) @name) @def.class
(record_declaration name: (_) @name) @def.class
(interface_declaration name: (_) @name) @def.interface
(annotation_type_declaration name: (_) @name) @def.interface
(enum_declaration name: (_) @name) @def.enum
(method_declaration name: (_) @name) @def.method
(constructor_declaration name: (_) @name) @def.method
(compact_constructor_declaration name: (_) @name) @def.method
""",
    comment_prefixes=(*_C_LIKE_COMMENTS, "@"),
)

# --- C / C++ -----------------------------------------------------------------------------

_C_FUNCTIONS = """
(function_definition declarator: (function_declarator declarator: (_) @name)) @def.function
(function_definition declarator: (pointer_declarator
  declarator: (function_declarator declarator: (_) @name))) @def.function
(function_definition declarator: (pointer_declarator declarator: (pointer_declarator
  declarator: (function_declarator declarator: (_) @name)))) @def.function
(struct_specifier name: (_) @name body: (_)) @def.struct
(union_specifier name: (_) @name body: (_)) @def.struct
(enum_specifier name: (_) @name body: (_)) @def.enum
(type_definition type: (struct_specifier body: (_)) declarator: (type_identifier) @name) @def.struct
(type_definition type: (union_specifier body: (_)) declarator: (type_identifier) @name) @def.struct
(type_definition type: (enum_specifier body: (_)) declarator: (type_identifier) @name) @def.enum
(preproc_function_def name: (_) @name) @def.macro
"""

C = LanguageSpec(grammar="c", query=_C_FUNCTIONS)

CPP = LanguageSpec(
    grammar="cpp",
    query=_C_FUNCTIONS
    + """
(function_definition declarator: (reference_declarator
  (function_declarator declarator: (_) @name))) @def.function
(class_specifier name: (_) @name body: (_)) @def.class
(namespace_definition name: (_) @name) @def.module
""",
    wrappers=frozenset({"template_declaration"}),
)

# --- Ruby, PHP, shell ----------------------------------------------------------------------

RUBY = LanguageSpec(
    grammar="ruby",
    query="""
(method name: (_) @name) @def.function
(singleton_method name: (_) @name) @def.method
(class name: (_) @name) @def.class
(module name: (_) @name) @def.module
""",
    comment_prefixes=_HASH_COMMENTS,
    method_containers=CLASS_KINDS | {"module"},
)

PHP = LanguageSpec(
    grammar="php",
    query="""
(function_definition name: (_) @name) @def.function
(class_declaration name: (_) @name) @def.class
(interface_declaration name: (_) @name) @def.interface
(trait_declaration name: (_) @name) @def.trait
(enum_declaration name: (_) @name) @def.enum
(method_declaration name: (_) @name) @def.method
(namespace_definition name: (_) @name body: (_)) @def.module
""",
    comment_prefixes=(*_C_LIKE_COMMENTS, "#"),
)

BASH = LanguageSpec(
    grammar="bash",
    query="(function_definition name: (_) @name) @def.function",
    comment_prefixes=_HASH_COMMENTS,
)

# --- documents and configuration -----------------------------------------------------------

MARKDOWN = LanguageSpec(
    grammar="markdown",
    query="""
(section (atx_heading heading_content: (_) @name)) @def.heading
(section (setext_heading heading_content: (_) @name)) @def.heading
""",
    comment_prefixes=(),
    declarative=True,
)

YAML = LanguageSpec(
    grammar="yaml",
    query="""
(stream (document (block_node (block_mapping (block_mapping_pair key: (_) @name) @def.key))))
""",
    comment_prefixes=_HASH_COMMENTS,
    declarative=True,
)

NIX = LanguageSpec(
    grammar="nix",
    query="""
(binding attrpath: (_) @name) @def.attribute
(inherit) @def.attribute
""",
    comment_prefixes=(*_HASH_COMMENTS, "/*", "*"),
    declarative=True,
    max_depth=3,
    refine=lambda node, kind, name: (kind, name) if node.type == "binding" else None,
)


def _hcl_refine(node: Any, kind: str, name: str) -> tuple[str, str] | None:
    # `resource "aws_instance" "web" {` -> kind "resource", name "aws_instance.web".
    labels = []
    for child in node.named_children:
        if child.type == "string_lit":
            labels.append(_text(child).strip('"'))
        elif child.type == "identifier" and child.start_byte > node.start_byte:
            labels.append(_text(child))
        elif child.type in ("block_start", "body"):
            break
    return name, ".".join(labels) if labels else name


HCL = LanguageSpec(
    grammar="hcl",
    query="(config_file (body (block . (identifier) @name) @def.block))",
    comment_prefixes=(*_HASH_COMMENTS, "//", "/*", "*"),
    declarative=True,
    refine=_hcl_refine,
)

TOML = LanguageSpec(
    grammar="toml",
    query="""
(table [(bare_key) (dotted_key) (quoted_key)] @name) @def.table
(table_array_element [(bare_key) (dotted_key) (quoted_key)] @name) @def.table
""",
    comment_prefixes=_HASH_COMMENTS,
    declarative=True,
)

SPECS: dict[str, LanguageSpec] = {
    "python": PYTHON,
    "javascript": JAVASCRIPT,
    "typescript": TYPESCRIPT,
    "tsx": TSX,
    "go": GO,
    "rust": RUST,
    "java": JAVA,
    "c": C,
    "cpp": CPP,
    "ruby": RUBY,
    "php": PHP,
    "bash": BASH,
    "markdown": MARKDOWN,
    "yaml": YAML,
    "nix": NIX,
    "hcl": HCL,
    "toml": TOML,
}
