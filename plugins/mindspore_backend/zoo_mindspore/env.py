"""Process settings that must be made before mindspore is imported (imports no mindspore).

MindSpore reads its log level, ``GLOG_v``, when the library loads; at its default level
(warnings) the graph compiler writes messages about its own internals between zoo's
progress lines.  :func:`quiet_mindspore_logs` sets errors-only unless the user chose a
level.  (The paddle backend's ``zoo_paddle.env`` plays the same part for MKL.)
"""

from __future__ import annotations

import os

#: MindSpore's log level variable (0 debug, 1 info, 2 warning: MindSpore's default, 3 error)
LOG_LEVEL_VARIABLE = "GLOG_v"


def quiet_mindspore_logs(environ: dict[str, str] | None = None) -> bool:
    """Set ``GLOG_v=3`` (errors only) unless the user set a level; True if it was set now.

    At its default level MindSpore writes graph-compiler warnings (for example "Some side
    effect nodes were eliminated by mistake" for zoo's DynaBERT loss) between zoo's progress
    lines; they are about MindSpore's internals, not the run.  Takes effect only before
    mindspore is imported; ``GLOG_v=2`` brings the warnings back.
    """
    env = os.environ if environ is None else environ
    if LOG_LEVEL_VARIABLE in env:
        return False
    env[LOG_LEVEL_VARIABLE] = "3"
    return True
