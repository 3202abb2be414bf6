"""Answers: the model's reply to a message, streamed and saved however the stream ends.

The question and an empty answer, status `streaming`, are stored at once; the model's text
streams when the Reply is iterated and is saved however the stream ends. Only a
conversation's owner (with at least the member role) talks in it (hexahub.chat.service).

    start_conversation(db, gateway, access, content, *, title="", model="",
                       system_prompt="", use_repo_context=False, repo_ids=None)
        -> (Conversation, Reply)      # a new conversation with its first message
    send_message(db, gateway, target, content, *, model=None) -> Reply
    regenerate(db, gateway, target, *, model=None) -> Reply
    edit_and_resend(db, gateway, target, message_id, content, *, model=None) -> Reply
    stop_reply(db, gateway, target) -> bool
    fail_interrupted(db) -> int       # at start: answers a stopped server left streaming
    `async for event in reply` gives {"type": "start" | "context" | "delta" | "done" |
    "error", ...}; `await reply.finish()` runs it to the end and returns the answer.
    Regenerating, or editing a user message, replaces the messages after that point.
    Repository context is added when the conversation asks for it, or for the
    repositories a message names as @name. What is sent is sized for the model's context
    window (hexahub.chat.history); an answer's `left_out` says how many earlier messages
    did not fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.chat import history
from hexahub.chat.history import Budget, Turn
from hexahub.chat.models import Conversation, Message, MessageRole, MessageStatus
from hexahub.chat.service import (
    ConversationAccess,
    check_model,
    default_model,
    get_messages,
    json_safe,
    message_dict,
    new_conversation,
    require_change,
    require_member,
    title_from,
)
from hexahub.core.db import new_id, utcnow
from hexahub.core.errors import Conflict, HexaHubError, NotFound, ValidationFailed
from hexahub.gateway import callers
from hexahub.gateway.engine import CallContext, Gateway, TextStreamEnd
from hexahub.gateway.providers.base import JSON
from hexahub.gateway.service import context_window
from hexahub.gateway.tokens import estimate_text_tokens
from hexahub.identity.authz import Principal, WorkspaceAccess

if TYPE_CHECKING:
    from hexahub.context.answers import Retrieved

log = logging.getLogger("hexahub.chat")

MAX_CONTENT = 100_000  # characters in one message
# Repository passages for one answer, at most; fewer when the model's window is small.
MAX_PASSAGES = 8
# A passage's own line (where it is from) and code fence around its text.
PASSAGE_FRAME_CHARS = 160
# A streaming answer not written for this long was cut off; it no longer blocks others.
STALE_STREAM = timedelta(minutes=15)
# At start, a streaming answer not written for this long (well over SAVE_EVERY_SECONDS,
# and over any pause of a model that is still answering) is one the server stopped writing
# by stopping; an answer written meanwhile by another replica is left alone.
INTERRUPTED_AFTER = timedelta(minutes=2)
INTERRUPTED = "interrupted: the server stopped while answering"
# While an answer streams: how often to look for a stop request, and to save partial text.
STOP_POLL_SECONDS = 0.25
SAVE_EVERY_SECONDS = 3.0
STOP_KEY = "chat:stop:"


class UpstreamFailed(HexaHubError):
    """The model failed to answer; the failed answer is stored with what it had written."""

    status_code = 502
    code = "upstream_error"


def _check_content(content: str) -> str:
    if not content or not content.strip():
        raise ValidationFailed("content: the message is empty; write something to send")
    if len(content) > MAX_CONTENT:
        raise ValidationFailed(
            f"content: the message is too long ({len(content)} characters; at most {MAX_CONTENT})"
        )
    return content


async def start_conversation(
    db: AsyncSession,
    gateway: Gateway,
    access: WorkspaceAccess,
    content: str,
    *,
    title: str = "",
    model: str = "",
    system_prompt: str = "",
    use_repo_context: bool = False,
    repo_ids: list[str] | None = None,
) -> tuple[Conversation, Reply]:
    """A new conversation with its first message, and the answer to stream.

    Everything `create_conversation` and `send_message` refuse is refused here before
    anything is stored, so a refused first message leaves no empty conversation behind;
    the conversation, the message and the answer's row are stored in one transaction."""
    require_member(access)
    content = _check_content(content)
    conversation = await new_conversation(
        db,
        gateway,
        access,
        title=title,
        model=model,
        system_prompt=system_prompt,
        use_repo_context=use_repo_context,
        repo_ids=repo_ids,
        first_message=content,
    )
    target = ConversationAccess(access, conversation)
    chosen = conversation.model or default_model(gateway)
    ctx = await _call_context(db, gateway, target, chosen)
    db.add(conversation)
    reply = await _ask(db, gateway, target, chosen, ctx, content, position=0)
    return conversation, reply


async def _next_position(db: AsyncSession, conversation_id: str) -> int:
    last = await db.scalar(
        select(func.max(Message.position)).where(Message.conversation_id == conversation_id)
    )
    return int(last) + 1 if last is not None else 0


async def _refuse_while_streaming(db: AsyncSession, conversation_id: str) -> None:
    busy = await db.scalar(
        select(Message.id).where(
            Message.conversation_id == conversation_id,
            Message.status == MessageStatus.streaming,
            Message.updated_at > utcnow() - STALE_STREAM,
        )
    )
    if busy is not None:
        raise Conflict(
            "an answer is still being written in this conversation; wait for it or stop it"
        )


async def _call_context(
    db: AsyncSession, gateway: Gateway, target: ConversationAccess, model: str
) -> CallContext:
    """The gateway's rules for this caller in the conversation's workspace, checked now
    (scope, role, limits, local-only policy), before anything is stored."""
    caller = await callers.resolve(db, target.principal, target.conversation.workspace_id)
    ctx = CallContext.for_caller(caller)
    await gateway.check_limits(ctx)
    gateway.router.plan(model, local_only=ctx.local_only)
    return ctx


MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][\w.-]{0,99})")


def mentions(text: str) -> list[str]:
    """Repository names mentioned as @name in a message."""
    return list(dict.fromkeys(m.rstrip(".") for m in MENTION.findall(text)))


async def _prepare(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    model: str | None,
) -> tuple[str, CallContext]:
    require_change(target)
    conversation = target.conversation
    chosen = check_model(gateway, model) if model else (conversation.model or "")
    chosen = chosen or default_model(gateway)
    ctx = await _call_context(db, gateway, target, chosen)
    await _refuse_while_streaming(db, conversation.id)
    if model and conversation.model != chosen:
        conversation.model = chosen  # the picker's choice holds for the next messages too
    return chosen, ctx


async def _reply(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    model: str,
    ctx: CallContext,
    *,
    question: str,
    user_message: Message | None,
    replaces_id: str | None,
) -> Reply:
    conversation = target.conversation
    conversation.updated_at = utcnow()
    messages = await get_messages(db, target)
    turns = history.turns_of(messages)
    # The answer's row is stored with the question, so its place in the conversation is
    # taken at once and a second message meanwhile is refused (an answer is streaming).
    answer = Message(
        id=new_id(),
        conversation_id=conversation.id,
        position=messages[-1].position + 1 if messages else 0,
        role=MessageRole.assistant,
        content="",
        model=model,
        status=MessageStatus.streaming,
        replaces_id=replaces_id,
        citations=[],
        created_at=utcnow(),
    )
    db.add(answer)
    try:
        await db.commit()  # and no transaction stays open while the answer streams
    except IntegrityError:
        await db.rollback()
        raise Conflict(
            "another message was sent to this conversation at the same moment; send yours again"
        ) from None
    return Reply(
        gateway,
        ctx,
        conversation_id=conversation.id,
        workspace_id=conversation.workspace_id,
        model=model,
        turns=turns,
        system_prompt=conversation.system_prompt,
        window=context_window(gateway.router.snapshot, model),
        question=question,
        use_repo_context=conversation.use_repo_context,
        repo_ids=list(conversation.repo_ids) if conversation.repo_ids else None,
        principal=target.principal,
        answer=message_dict(answer),
        user_message=message_dict(user_message) if user_message is not None else None,
    )


async def send_message(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    content: str,
    *,
    model: str | None = None,
) -> Reply:
    """Store the user's message now and return the answer to stream.

    Everything that can be refused (empty or too long text, an unknown model, limits,
    a local-only policy, an answer still streaming) is refused here, before anything is
    stored. `model` also becomes the conversation's model for the messages after it."""
    content = _check_content(content)
    chosen, ctx = await _prepare(db, gateway, target, model)
    conversation = target.conversation
    position = await _next_position(db, conversation.id)
    if not conversation.title:
        conversation.title = title_from(content)
    return await _ask(db, gateway, target, chosen, ctx, content, position=position)


async def _ask(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    model: str,
    ctx: CallContext,
    content: str,
    *,
    position: int,
) -> Reply:
    """Store the user's message at `position` and the answer to it, to stream."""
    message = Message(
        id=new_id(),
        conversation_id=target.conversation.id,
        position=position,
        role=MessageRole.user,
        content=content,
        status=MessageStatus.complete,
        created_at=utcnow(),
    )
    db.add(message)
    return await _reply(
        db,
        gateway,
        target,
        model,
        ctx,
        question=content,
        user_message=message,
        replaces_id=None,
    )


async def _drop_after(db: AsyncSession, conversation_id: str, position: int) -> str | None:
    """Delete the messages after `position`; the id of the first answer among them."""
    later = (
        await db.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.position > position)
            .order_by(Message.position)
        )
    ).all()
    replaced = next((m.id for m in later if m.role == MessageRole.assistant), None)
    if later:
        await db.execute(
            delete(Message).where(
                Message.conversation_id == conversation_id, Message.position > position
            )
        )
    return replaced


async def regenerate(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    *,
    model: str | None = None,
) -> Reply:
    """Answer the last user message again: the answer(s) after it are replaced."""
    chosen, ctx = await _prepare(db, gateway, target, model)
    conversation = target.conversation
    last_user = await db.scalar(
        select(Message)
        .where(Message.conversation_id == conversation.id, Message.role == MessageRole.user)
        .order_by(Message.position.desc())
        .limit(1)
    )
    if last_user is None:
        raise ValidationFailed("nothing to regenerate: this conversation has no message yet")
    replaced = await _drop_after(db, conversation.id, last_user.position)
    return await _reply(
        db,
        gateway,
        target,
        chosen,
        ctx,
        question=last_user.content,
        user_message=None,
        replaces_id=replaced,
    )


async def edit_and_resend(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    message_id: str,
    content: str,
    *,
    model: str | None = None,
) -> Reply:
    """Change one of the user's messages and answer it again: everything after it is
    replaced by the new answer."""
    content = _check_content(content)
    conversation = target.conversation
    message = await db.get(Message, message_id)
    if message is None or message.conversation_id != conversation.id:
        raise NotFound(f"no message with id {message_id} in this conversation")
    if message.role != MessageRole.user:
        raise ValidationFailed("only your own (user) messages can be edited and sent again")
    chosen, ctx = await _prepare(db, gateway, target, model)
    replaced = await _drop_after(db, conversation.id, message.position)
    message.content = content
    message.edited_at = utcnow()
    return await _reply(
        db,
        gateway,
        target,
        chosen,
        ctx,
        question=content,
        user_message=message,
        replaces_id=replaced,
    )


async def fail_interrupted(db: AsyncSession, *, older_than: timedelta = INTERRUPTED_AFTER) -> int:
    """Mark the answers left `streaming` by a server that stopped (not written for
    `older_than`) as failed, keeping their partial text; how many. Called at start."""
    found = (
        await db.scalars(
            select(Message).where(
                Message.status == MessageStatus.streaming,
                Message.updated_at < utcnow() - older_than,
            )
        )
    ).all()
    for message in found:
        message.status = MessageStatus.failed
        message.error = INTERRUPTED
    await db.commit()
    if found:
        log.warning("%d chat answer(s) were cut off by a stop; marked failed", len(found))
    return len(found)


async def stop_reply(db: AsyncSession, gateway: Gateway, target: ConversationAccess) -> bool:
    """Ask the answer being written in this conversation to stop (on whichever replica
    writes it); it keeps its text with status `stopped`. False when nothing streams."""
    require_change(target)
    streaming = (
        await db.scalars(
            select(Message.id).where(
                Message.conversation_id == target.conversation.id,
                Message.status == MessageStatus.streaming,
            )
        )
    ).all()
    for message_id in streaming:
        await gateway.runtime.shared.set(STOP_KEY + message_id, b"1", ttl_seconds=3600)
    return bool(streaming)


@dataclass
class _Progress:
    text: list[str] = field(default_factory=list)
    status: str = MessageStatus.streaming
    error: str | None = None
    error_code: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    left_out: int = 0

    def take_usage(self, end: TextStreamEnd) -> None:
        """The model call's usage and cost, however it ended (a stopped answer included)."""
        self.prompt_tokens = end.prompt_tokens
        self.completion_tokens = end.completion_tokens
        self.cost_usd = end.cost_usd
        self.ttft_ms = end.ttft_ms


class Reply:
    """One answer being written. Iterate it (once) for events:

    {"type": "start", "message": {...}, "user_message": {...} | None}  the stored answer row
    {"type": "context", "citations": [...]}     repository passages the answer may cite
    {"type": "delta", "text": "..."}            the next piece of text
    {"type": "done", "message": {...}}          finished: status complete, or stopped
    {"type": "error", "error": {"code", "message"}, "message": {...}}  failed (status failed)

    However it ends (finished, stopped, the reader gone, the model failed), the answer is
    saved with the text written so far, its usage and cost."""

    def __init__(
        self,
        gateway: Gateway,
        ctx: CallContext,
        *,
        conversation_id: str,
        workspace_id: str,
        model: str,
        turns: list[Turn],
        system_prompt: str,
        window: int,
        question: str,
        use_repo_context: bool,
        repo_ids: list[str] | None,
        principal: Principal | None,
        answer: dict[str, Any],
        user_message: dict[str, Any] | None,
    ) -> None:
        self.gateway = gateway
        self.ctx = ctx
        self.conversation_id = conversation_id
        self.workspace_id = workspace_id
        self.model = model
        self.turns = turns
        self.system_prompt = system_prompt
        self.window = window
        self.question = question
        self.use_repo_context = use_repo_context
        self.principal = principal
        self.repo_ids = repo_ids
        self.answer = answer
        self.user_message = user_message
        self.message_id: str = answer["id"]
        self._started = False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("a reply can be read only once")
        self._started = True
        return self._run()

    async def finish(self) -> dict[str, Any]:
        """Run to the end; the answer (a message dict). UpstreamFailed if the model failed."""
        async for event in self:
            if event["type"] == "done":
                message: dict[str, Any] = event["message"]
                return message
            if event["type"] == "error":
                raise UpstreamFailed(
                    event["error"]["message"], details={"message": json_safe(event["message"])}
                )
        raise RuntimeError("the reply ended without an answer")

    async def _save(self, progress: _Progress, *, final: bool) -> dict[str, Any] | None:
        async with self.gateway.runtime.db.sessions() as db:
            row = await db.get(Message, self.message_id)
            if row is None:  # the conversation was deleted meanwhile
                return None
            row.content = "".join(progress.text)
            row.citations = progress.citations
            row.left_out = progress.left_out
            if final:
                row.status = progress.status
                row.error = progress.error
                row.prompt_tokens = progress.prompt_tokens
                row.completion_tokens = progress.completion_tokens
                row.cost_usd = progress.cost_usd
                row.ttft_ms = progress.ttft_ms
                conversation = await db.get(Conversation, self.conversation_id)
                if conversation is not None:
                    conversation.updated_at = utcnow()
            await db.commit()
            return message_dict(row)

    async def _context(self, progress: _Progress, limit: int) -> Retrieved | None:
        """At most `limit` repository passages that fit the question, when found.

        Repositories named as @name in the question are searched first; when those names
        are no repositories, the conversation's own choice (if it uses context at all)."""
        from hexahub.context import answers

        runtime = self.gateway.runtime
        choices: list[list[str] | None] = []
        named = mentions(self.question)
        if named:
            choices.append(named)
        if self.use_repo_context:
            choices.append(self.repo_ids)
        for repo_ids in choices:
            try:
                async with runtime.db.sessions() as db:
                    found = await answers.retrieve(
                        runtime,
                        db,
                        self.workspace_id,
                        self.question,
                        repo_ids=repo_ids,
                        limit=limit,
                        principal=self.principal,
                    )
            except HexaHubError as exc:
                log.info("no repository context from %s: %s", repo_ids, exc.message)
                continue
            except Exception:
                # An answer without context beats no answer; the log says what went wrong.
                log.exception("repository context for a chat answer failed")
                return None
            progress.citations = [dataclasses.asdict(c) for c in found.citations]
            return found
        return None

    async def _messages(self, progress: _Progress) -> list[JSON]:
        """What the model is sent, sized for its context window: the system prompt and the
        question, repository passages (when asked for) and as many earlier turns as fit."""
        from hexahub.context import answers

        budget = Budget.for_window(self.window, self.system_prompt, self.turns[-1].content)
        found = None
        if self.use_repo_context or mentions(self.question):
            frame = history.message_tokens(answers.INSTRUCTIONS)
            per_passage = estimate_text_tokens(answers.PASSAGE_CHARS + PASSAGE_FRAME_CHARS)
            limit = budget.passages_limit(per_passage, MAX_PASSAGES, overhead=frame)
            if limit:
                found = await self._context(progress, limit)
            else:
                log.info("no room for repository passages in %s's window", self.model)
            if found is not None and found.prompt:
                budget.take(history.message_tokens(found.prompt))
        fitted = history.fit(budget, self.system_prompt, self.turns)
        progress.left_out = len(fitted.left_out)
        if found is None:
            return fitted.messages
        return answers.messages_with_context(found, fitted.messages)

    async def _stop_requested(self) -> bool:
        return await self.gateway.runtime.shared.get(STOP_KEY + self.message_id) is not None

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        gateway, ctx, progress = self.gateway, self.ctx, _Progress()
        started = self.answer
        yield {"type": "start", "message": json_safe(started), "user_message": _user(self)}
        pump: asyncio.Task[None] | None = None
        final: dict[str, Any] | None = None
        try:
            messages = await self._messages(progress)
            if progress.citations:
                yield {"type": "context", "citations": progress.citations}
            ctx.started, ctx.upstream_seconds = time.perf_counter(), 0.0
            # The model is read by a task of its own, so a stop request is seen even while
            # the model is silent, and stopping is cancelling that task.
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            pump = asyncio.create_task(
                _pump(
                    gateway.stream_text(
                        ctx, self.model, {"messages": messages}, on_end=progress.take_usage
                    ),
                    queue,
                )
            )
            last_poll = last_save = time.monotonic()
            while True:
                try:
                    kind, item = await asyncio.wait_for(queue.get(), STOP_POLL_SECONDS)
                except TimeoutError:
                    kind, item = "idle", None
                if kind == "error":
                    _failed(progress, item)
                    break
                if kind == "end":
                    end: TextStreamEnd = item  # its usage came through on_end
                    if end.error:
                        progress.status, progress.error = MessageStatus.failed, end.error
                        progress.error_code = "upstream_error"
                    else:
                        progress.status = MessageStatus.complete
                    break
                now = time.monotonic()
                if kind == "idle" or now - last_poll >= STOP_POLL_SECONDS:
                    last_poll = now
                    if await self._stop_requested():
                        progress.status = MessageStatus.stopped
                        break
                if kind == "idle":
                    continue
                if progress.ttft_ms is None:
                    progress.ttft_ms = round((time.perf_counter() - ctx.started) * 1000, 2)
                progress.text.append(item)
                yield {"type": "delta", "text": item}
                if now - last_save >= SAVE_EVERY_SECONDS:
                    last_save = now
                    await self._save(progress, final=False)
        except (asyncio.CancelledError, GeneratorExit):
            progress.status = MessageStatus.stopped  # the reader went away
            raise
        except Exception as exc:
            log.exception("a chat answer failed")
            progress.status, progress.error = MessageStatus.failed, f"internal error: {exc}"
            progress.error_code = "internal_error"
        finally:
            # Saved whatever happens, even while this task is being cancelled.
            with anyio.CancelScope(shield=True):
                if pump is not None and not pump.done():
                    pump.cancel()  # the gateway accounts for the call as it closes
                    with contextlib.suppress(BaseException):
                        await pump
                if progress.status == MessageStatus.streaming:
                    progress.status = MessageStatus.stopped
                final = await self._save(progress, final=True)
                with contextlib.suppress(Exception):
                    await gateway.runtime.shared.delete(STOP_KEY + self.message_id)
        if final is None:  # deleted while it was written
            final = {**started, "content": "".join(progress.text), "status": progress.status}
        if progress.status == MessageStatus.failed:
            yield {
                "type": "error",
                "error": {
                    "code": progress.error_code or "upstream_error",
                    "message": progress.error,
                },
                "message": json_safe(final),
            }
        else:
            yield {"type": "done", "message": json_safe(final)}


async def _pump(
    stream: AsyncIterator[str | TextStreamEnd], queue: asyncio.Queue[tuple[str, Any]]
) -> None:
    try:
        async for item in stream:
            queue.put_nowait(("end", item) if isinstance(item, TextStreamEnd) else ("piece", item))
    except Exception as exc:
        queue.put_nowait(("error", exc))


def _user(reply: Reply) -> dict[str, Any] | None:
    return json_safe(reply.user_message) if reply.user_message is not None else None


def _failed(progress: _Progress, exc: Exception) -> None:
    progress.status = MessageStatus.failed
    progress.error = str(getattr(exc, "message", exc))[:2000]
    progress.error_code = (
        exc.code if isinstance(exc, HexaHubError) else getattr(exc, "error_type", "upstream_error")
    )
