"""Build a tiny, randomly initialised Qwen2-VL (model, tokenizer, processor) offline.

    python scripts/make_tiny_qwen2vl.py OUT_DIR

The model is about 1 MB and answers noise, but it runs the real transformers code path:
real patch size 14, spatial merge 2 and temporal patch 2 (so visual token counts are the
real ones), the 14 Qwen2-VL special tokens in their order, the model card's chat template,
and a byte-level BPE tokenizer using Qwen2's pre-tokenizer. The folder reloads with
``HF_HUB_OFFLINE=1``. Tests import ``build_tiny_qwen2vl`` from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The 14 special tokens of Qwen2-VL, in the order of their ids (151643..151656 in the release).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# chat_template.json of Qwen/Qwen2-VL-7B-Instruct and -2B-Instruct
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the BPE is trained on: enough for JSON answers, boxes and the prompt's words.
_CORPUS = (
    '{"findings": [{"category": "license_plate", "first_frame": 1, "last_frame": 4, '
    '"description": "white car plate", "value": "AB-123-CD", "confidence": 0.9, '
    '"box": [120, 340, 260, 400]}]}',
    "face person_name id_document payment_card screen_content contact_info address text other",
    "You look at frames of a video and report personal data. Answer with JSON only.",
    "The window spans 12.0 s to 19.0 s. Frame 1 at 12.0 s, frame 2 at 13.0 s.",
    "0123456789 ()[]{},.:;\"'-_/ abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n",
)


def build_tiny_qwen2vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2-VL to ``out_dir`` and return the folder."""
    from streampii._torchvision import ensure_torchvision

    ensure_torchvision()  # the video processor imports torchvision
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        Qwen2Tokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # byte-level BPE with Qwen2's pre-tokenizer; the special tokens come after the learned vocab
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(list(_CORPUS) * 4, trainer=trainer)
    vocab = bpe.get_vocab()
    # give the special tokens their ids here, in order, so eos/pad do not get added first
    vocab.update({tok: len(vocab) + i for i, tok in enumerate(SPECIAL_TOKENS)})
    # merges as (left, right) pairs, read back from the serialised model (stable across versions)
    saved = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in saved]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
    )
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    if sorted(ids.values()) != list(ids.values()) or len(set(ids.values())) != len(SPECIAL_TOKENS):
        raise RuntimeError(f"special tokens out of order: {ids}")
    vocab_size = len(tokenizer)

    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            # head_dim 16: the three M-RoPE sections (time, height, width) sum to head_dim / 2
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "num_heads": 4,
            "mlp_ratio": 2,
            "hidden_size": 64,  # the merger projects into the text hidden size
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)

    # the released preprocessor values; streampii resizes frames itself and turns resizing off
    pixels = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the model to (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = build_tiny_qwen2vl(args.out_dir, seed=args.seed)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"tiny Qwen2-VL written to {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
