"""Imports every domain's tables so Alembic and tests see the whole schema."""

from hexahub.chat import models as _chat_models  # noqa: F401
from hexahub.context import models as _context_models  # noqa: F401
from hexahub.core.db import Base
from hexahub.core.queue import models as _queue_models  # noqa: F401
from hexahub.gateway import models as _gateway_models  # noqa: F401
from hexahub.identity import models as _identity_models  # noqa: F401
from hexahub.vault import models as _vault_models  # noqa: F401

metadata = Base.metadata
