"""Templates and env values into strings: the Jinja sandbox and its budget, outputs,
the render engine and the compiled-template cache. No disk writes, no network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .compilecache import CompileCache
    from .engine import Engine, Job, Outcome, render_job
    from .outputs import NoTemplates, Rendered, checked_env, is_template_text, plain_env_spec, secret_strings
    from .renderer import Renderer

__all__ = [
    "CompileCache",
    "Engine",
    "Job",
    "NoTemplates",
    "Outcome",
    "Rendered",
    "Renderer",
    "checked_env",
    "is_template_text",
    "plain_env_spec",
    "render_job",
    "secret_strings",
]
__getattr__ = lazy_names(
    __name__,
    {
        "checked_env": "envcheck",
        "CompileCache": "compilecache",
        "Engine": "engine",
        "is_template_text": "envcheck",
        "Job": "engine",
        "NoTemplates": "outputs",
        "Outcome": "engine",
        "plain_env_spec": "outputs",
        "render_job": "engine",
        "Rendered": "outputs",
        "Renderer": "renderer",
        "secret_strings": "outputs",
    },
)
