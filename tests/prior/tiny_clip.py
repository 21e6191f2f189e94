"""A tiny CLIP text encoder + tokenizer written to disk for tests (no download, ~100 kB).

``make_tiny_clip(dir)`` writes ``dir/text_encoder/`` and ``dir/tokenizer/`` with
``save_pretrained``, the layout of a diffusers checkpoint. The tokenizer is a real byte-level
BPE ``CLIPTokenizer`` built from a hand-written vocabulary: all 256 byte symbols (alone and
word-final with ``</w>``, so no text is ever unknown) plus merges that make whole tokens of
the words our prompts use. The text model is randomly initialised from a seeded
``torch.Generator``, so the same seed writes the same weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
WORDS = (
    "brain", "knee", "prostate", "spine", "abdomen", "cardiac", "slice", "pathology",
    "sequence", "tr", "te", "ti", "flip", "angle", "age", "sex", "flair", "pdfs", "pd", "pre",
    "post", "t", "turbospinecho", "spinecho", "gradientecho", "inversionrecovery", "qdess",
    "white", "matter", "lesion", "mass", "edema",
)


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode symbol table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = list(bs)
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _merges(words) -> List[str]:
    """Left-to-right merges building each word, the last symbol word-final (``</w>``)."""
    merges: List[str] = []
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        left = symbols[0]
        for right in symbols[1:]:
            merge = f"{left} {right}"
            if merge not in merges:
                merges.append(merge)
            left = left + right
    return merges


def tiny_vocab() -> tuple:
    """``(vocab dict, merges list)`` in CLIP's order: bytes, bytes + ``</w>``, merges, specials."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    merges = _merges(WORDS)
    for merge in merges:
        token = merge.replace(" ", "")
        if token not in tokens:
            tokens.append(token)
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def _init_weights(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every weight matrix from N(0, 0.02) with a seeded generator (biases 0, norms 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name or "layernorm" in name:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)


def make_tiny_clip(directory: Path, seed: int = 0) -> Path:
    """Write a tiny CLIP (hidden 32, 2 layers, 77 positions) to ``directory``; returns it."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    directory = Path(directory)
    vocab, merges = tiny_vocab()
    with tempfile.TemporaryDirectory() as tmp:  # hand-written files, as CLIP ships them
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tokenizer = CLIPTokenizer.from_pretrained(tmp, local_files_only=True)
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(str(directory / "tokenizer"))
    config = CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        vocab_size=len(vocab), max_position_embeddings=77, projection_dim=32,
        bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS],
    )
    model = CLIPTextModel(config)
    _init_weights(model, seed)
    model.save_pretrained(str(directory / "text_encoder"))
    return directory
