"""Every exception pykaf raises: ``from pykaf.errors import NotLeaderOrFollowerError``."""

from pykaf._error_codes import error_for_code, raise_for_code
from pykaf._errors import *  # noqa: F403
from pykaf._errors import __all__ as _base_all
from pykaf._kafka_errors import *  # noqa: F403
from pykaf._kafka_errors import __all__ as _code_all

__all__ = [*_base_all, *_code_all, "error_for_code", "raise_for_code"]  # noqa: PLE0604
