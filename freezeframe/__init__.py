"""freezeframe: turn a small pretrained transformer into a text classifier by strategic layer freezing."""

import os

# freezeframe never downloads: models come from local directories, the packaged default or an
# already-filled Hugging Face cache. Set before transformers/huggingface_hub read it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

__version__ = "0.1.0"
