"""API shapes of the code-context routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from hexahub.core.bodies import JsonBody

Glob = Field(max_length=300)


class RepoCreate(JsonBody):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    source: Literal["path", "git"]
    location: str = Field(min_length=1, max_length=1000, description="Directory or git URL")
    branch: str | None = Field(None, max_length=200)
    include: list[str] = Field(default_factory=list, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=100)
    credential_kind: Literal["token", "ssh_key"] | None = None
    credential: str | None = Field(
        None,
        max_length=20_000,
        description="An HTTPS access token or an SSH private key, or a vault:// reference "
        "to one. Stored encrypted; never returned.",
    )
    index: bool = Field(True, description="Start indexing at once")


class RepoUpdate(JsonBody):
    branch: str | None = Field(None, max_length=200)
    include: list[str] | None = Field(None, max_length=100)
    exclude: list[str] | None = Field(None, max_length=100)
    credential_kind: Literal["token", "ssh_key"] | None = None
    credential: str | None = Field(None, max_length=20_000)
    clear_credential: bool = False


class RepoOut(BaseModel):
    id: str
    workspace_id: str
    name: str
    source: str
    location: str
    branch: str | None
    include: list[str]
    exclude: list[str]
    has_credential: bool
    state: str
    phase: str
    progress_done: int
    progress_total: int
    last_error: str | None
    last_commit: str | None
    indexed_at: datetime | None
    files: int
    skipped: int
    chunks: int
    embedded: int
    symbols: int
    embedding_model: str | None
    created_at: datetime


class IndexRequest(JsonBody):
    full: bool = Field(False, description="Forget the index and read every file again")


class HitOut(BaseModel):
    repo_id: str
    repo: str
    path: str
    start_line: int
    end_line: int
    language: str
    kind: str
    symbol: str | None
    score: float
    snippet: str
    url: str


class SearchOut(BaseModel):
    query: str
    mode: str
    hits: list[HitOut]
    # Repositories whose vectors are still being filled in (their hits are full text only).
    partial: list[str] = Field(default_factory=list)


class SymbolOut(BaseModel):
    repo_id: str
    repo: str
    path: str
    name: str
    kind: str
    start_line: int
    end_line: int
    container: str | None
    signature: str
    language: str
    url: str


class FileOut(BaseModel):
    repo_id: str
    path: str
    language: str
    content: str
    lines: int


class AskRequest(JsonBody):
    question: str = Field(min_length=1, max_length=8000)
    workspace_id: str | None = None
    repos: list[str] | None = Field(None, description="Repository names or ids; default all")
    model: str | None = Field(None, max_length=200)
    limit: int = Field(8, ge=1, le=30, description="Passages given to the model")
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=32_000)


class CitationOut(BaseModel):
    number: int
    repo_id: str
    repo: str
    path: str
    start_line: int
    end_line: int
    url: str


class AskOut(BaseModel):
    answer: str
    model: str
    citations: list[CitationOut]
    usage: dict[str, int]


class FindingOut(BaseModel):
    """A credential secret scanning found: where and what kind, never the value."""

    id: str
    repo_id: str
    path: str
    line: int
    rule: str = Field(description="The rule that found it, e.g. 'Stripe Access Key'")
    commit: str | None = Field(
        description="The commit that added it (history scan), else the commit the tree was "
        "at when it was seen"
    )
    in_tree: bool = Field(description="The current tree still holds it")
    in_history: bool = Field(description="A history scan found it in a commit")
    status: Literal["open", "moved", "gone"]
    first_seen_at: datetime
    last_seen_at: datetime
    vault_path: str | None = Field(description="Where its value was moved to, once moved")
    resolved_at: datetime | None
    resolved_by: str | None


class MoveToVaultIn(JsonBody):
    vault_path: str = Field(
        min_length=1,
        max_length=512,
        description="Path of the new vault secret, e.g. payments/stripe-live-key; it must not "
        "exist yet",
    )
    key: str = Field("value", min_length=1, max_length=128, description="Key name inside it")


class HistoryCleanupOut(BaseModel):
    steps: list[str] = Field(description="What to do, in order")
    filter_repo: list[str] = Field(description="The history rewrite with git filter-repo")
    bfg: list[str] = Field(description="The same with the BFG Repo-Cleaner")


class MoveToVaultOut(BaseModel):
    finding: FindingOut
    vault_path: str
    key: str
    version: int
    reference: str = Field(description="vault:// reference to use where the value is needed")
    history_cleanup: HistoryCleanupOut = Field(
        description="The value is still in the repository's history: how to take it out"
    )
