"""Where a repository's files come from: a directory on the server, or a git clone.

git runs as a subprocess with no terminal prompt and a time limit. Credentials never
appear on a command line (other local users can read those): an HTTPS token travels in
git's environment-based configuration as an Authorization header, an SSH key in a 0600
file inside a private temporary directory that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hexahub.core.errors import ValidationFailed

GIT_URL = re.compile(
    r"^(https?://[^\s]+|ssh://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+|file://[^\s]+)$"
)
BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


class SourceError(Exception):
    """The repository cannot be read: say what to fix (not retried)."""


@dataclass(frozen=True)
class Credential:
    kind: str  # "token" or "ssh_key"
    value: str


def check_git_url(url: str) -> str:
    url = url.strip()
    if not GIT_URL.match(url) or url.startswith("-"):
        raise ValidationFailed(
            "location: a git URL must look like https://host/owner/repo.git, "
            "ssh://git@host/owner/repo.git or git@host:owner/repo.git"
        )
    if re.match(r"^https?://[^/]*@", url):
        raise ValidationFailed(
            "location: put the access token in `credential`, not in the URL, "
            "so that it is stored encrypted"
        )
    return url


def check_branch(branch: str | None) -> str | None:
    if branch is None or branch == "":
        return None
    if not BRANCH.match(branch) or branch.startswith("-") or ".." in branch:
        raise ValidationFailed(f"branch: {branch!r} is not a valid branch name")
    return branch


def redact(text: str, credential: Credential | None) -> str:
    if credential is not None and credential.value:
        text = text.replace(credential.value, "***")
    return text


async def _git(args: list[str], *, cwd: Path | None, env: dict[str, str], limit: float) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SourceError(f"git {args[0]} took longer than {limit:g} s") from None
    if process.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        tail = " ".join(message[-3:]) if message else f"exit status {process.returncode}"
        raise SourceError(f"git {args[0]} failed: {tail}")
    return out.decode(errors="replace").strip()


@contextlib.contextmanager
def _git_env(
    url: str, dest: Path, credential: Credential | None, known_hosts: Path
) -> Iterator[dict[str, str]]:
    """The environment git runs in for `url`: no prompts, the credential as a header or a
    key file (removed afterwards), new SSH host keys remembered in `known_hosts`."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(dest.parent),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "LC_ALL": "C",
    }
    private_dir = None
    try:
        if credential is not None and credential.kind == "token":
            basic = base64.b64encode(f"x-access-token:{credential.value}".encode()).decode()
            env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
                }
            )
        if credential is not None and credential.kind == "ssh_key":
            private_dir = Path(tempfile.mkdtemp(prefix="hexahub-ssh-"))
            key_file = private_dir / "key"
            key_file.touch(mode=0o600)
            key_file.write_text(credential.value.strip() + "\n")
            known_hosts.parent.mkdir(parents=True, exist_ok=True)
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {key_file} -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known_hosts}"
            )
        elif url.startswith(("ssh://",)) or "@" in url.split("/", 1)[0]:
            env["GIT_SSH_COMMAND"] = (
                "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new "
                f"-o UserKnownHostsFile={known_hosts}"
            )
        yield env
    finally:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)


async def sync_git(
    url: str,
    dest: Path,
    *,
    branch: str | None,
    credential: Credential | None,
    limit: float,
    known_hosts: Path,
) -> str:
    """Clone `url` into `dest`, or bring an existing clone to the branch's newest commit
    (shallow: only the current tree is needed). Returns the commit id."""
    with _git_env(url, dest, credential, known_hosts) as env:
        try:
            if await asyncio.to_thread(_has_clone, dest):
                ref = branch or "HEAD"
                await _git(["fetch", "--depth", "1", "origin", ref], cwd=dest, env=env, limit=limit)
                await _git(["reset", "--hard", "FETCH_HEAD"], cwd=dest, env=env, limit=limit)
                await _git(["clean", "-fdx", "-q"], cwd=dest, env=env, limit=limit)
            else:
                partial = await asyncio.to_thread(_fresh_partial, dest)
                args = ["clone", "--depth", "1", "--no-tags", "--single-branch"]
                if branch:
                    args += ["--branch", branch]
                await _git([*args, "--", url, str(partial)], cwd=None, env=env, limit=limit)
                # A clone cut short never looks like a finished one.
                await asyncio.to_thread(partial.rename, dest)
            return await _git(["rev-parse", "HEAD"], cwd=dest, env=env, limit=limit)
        except SourceError as exc:
            raise SourceError(redact(str(exc), credential)) from None


async def unshallow(
    url: str,
    dest: Path,
    *,
    branch: str | None,
    credential: Credential | None,
    limit: float,
    known_hosts: Path,
) -> None:
    """Fetch the whole history of the branch into a clone `sync_git` made shallow (for the
    history scan); nothing to do when it already has it."""
    if not await asyncio.to_thread((dest / ".git" / "shallow").exists):
        return
    with _git_env(url, dest, credential, known_hosts) as env:
        try:
            await _git(
                ["fetch", "--unshallow", "--no-tags", "origin", branch or "HEAD"],
                cwd=dest,
                env=env,
                limit=limit,
            )
        except SourceError as exc:
            raise SourceError(redact(str(exc), credential)) from None


def _has_clone(dest: Path) -> bool:
    return (dest / ".git").is_dir()


def _fresh_partial(dest: Path) -> Path:
    """An empty place to clone into, beside `dest`, with no leftovers of earlier tries."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    return partial


async def local_commit(root: Path) -> str | None:
    """The checked-out commit when a local directory is a git work tree."""
    if not await asyncio.to_thread((root / ".git").exists):
        return None
    try:
        return await _git(
            ["rev-parse", "HEAD"],
            cwd=root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0"},
            limit=10,
        )
    except SourceError:
        return None
