"""For the LiteLLM proxy's config: `litellm_settings: {callbacks: shadowd.integrations.litellm_proxy.handler}`.

The mirror is configured from the environment (see `ShadowdMirrorCallback.from_env`) when the proxy loads it.
"""

from shadowd.integrations.litellm import ShadowdMirrorCallback

handler = ShadowdMirrorCallback.from_env()
