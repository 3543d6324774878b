"""Cache keys: what identifies a node's result (see :mod:`.cache`; the code's part is
:func:`.cache.code_identity`)."""
from __future__ import annotations

from typing import Any

from .cache_integrity import sha256_json

# Bumped whenever the entry layout or what is stored under a key changes: old entries are simply
# not found. 3: the runtime writes the HISTORY provenance of every image output; knob parameters
# left the key. 4: checksums in the manifest, store-relative paths, the node's implementation
# version and library versions in the key, write-time cards out of frame keys.
KEY_VERSION = 4


def node_key(type_id: str, version: int, params: dict, inputs: dict, extra: Any = None,
             code: dict | None = None) -> tuple[str, dict]:
    """Cache key and its pre-image: sha256 of canonical JSON of type, version, params, inputs.

    ``extra`` is the node's :meth:`~.node.Node.fingerprint`, ``code`` its
    :func:`code_identity`.
    """
    pre = {"key_version": KEY_VERSION, "type": type_id, "version": version, "params": params,
           "inputs": inputs}
    if extra is not None:
        pre["fingerprint"] = extra
    if code is not None:
        pre["code"] = code
    return sha256_json(pre), pre

