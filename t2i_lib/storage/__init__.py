"""Where bytes go: atomic writes, checkpoints, downloads, restricted unpickling.

- ``atomic``: atomic file writes, used by everything that writes a file for later (Chapter 1)
- ``checkpoint``: checkpoints with exact resume, safe loading, safetensors weights (Chapter 1)
- ``download``: the one way anything is fetched: cache folder, SHA-256 check, resume, offline message (Chapter 1)
- ``unpickle``: reading tensors out of a pickle of whole modules without running its code (Chapter 5)

The bottom layer of the library: it imports no other part of ``t2i_lib``.
"""
