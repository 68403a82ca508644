"""Encoders (BERT and its kin, ESM, BART): bidirectional attention over a padded batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.recipes.families import BATCH, SEQ, Family, as_np, base, call, diff, ids, mask


def segments(seed: int = 1) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 2, size=(BATCH, SEQ)).astype("int32")


def encoder(pad: int = 2, segment_ids: bool = False, pooled: bool = False
            ) -> Callable[[Any, Any, Any], dict[str, float]]:
    """The backbone's sequence output against the Hugging Face base model's last hidden state, on the same
    token ids and padding mask (and segment ids where the backbone takes them); padded positions are left
    out, since neither side promises anything there. `pooled`: the pooler output too (position 0)."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import torch
        x, m = ids(cfg.vocab_size), mask(pad)
        inputs = {"token_ids": x, "padding_mask": m}
        kwargs = {"input_ids": torch.tensor(x, dtype=torch.long), "attention_mask": torch.tensor(m)}
        if segment_ids:
            s = segments()
            inputs["segment_ids"] = s
            kwargs["token_type_ids"] = torch.tensor(s, dtype=torch.long)
        y = call(backbone, inputs)
        seq = y["sequence_output"] if isinstance(y, dict) else y
        with torch.no_grad():
            o = base(hf)(**kwargs)
        out = {"sequence": diff(o.last_hidden_state.numpy(), as_np(seq), m)}
        if pooled:
            out["pooled"] = diff(o.pooler_output.numpy(), as_np(y["pooled_output"]))
        return out
    return f


def zeroed(names: tuple[str, ...], compare: Callable[[Any, Any, Any], dict[str, float]]
           ) -> Callable[[Any, Any, Any], dict[str, float]]:
    """`compare` against a copy of the Hugging Face model with the parameters `names` set to zero: what
    keras-hub's converter leaves out (RoBERTa's token-type row, which Hugging Face adds to every token and
    keras-hub's backbone has no place for), so what is left to compare is everything it does port."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import copy

        import torch
        twin = copy.deepcopy(hf)
        params = dict(twin.named_parameters())
        with torch.no_grad():
            for n in names:
                params[n].zero_()
        return compare(twin, backbone, cfg)
    return f


def hub_layout(folder: Path, hf: Any) -> None:
    """Rewrite the checkpoint as the hub's ESM-2 files have it (and keras-hub's converter reads it):
    `LayerNorm.weight`/`.bias` (transformers 5 saves ESM's as `gamma`/`beta`) and no tied LM decoder."""
    from safetensors.torch import save_file
    tied = set(getattr(hf, "_tied_weights_keys", None) or ())
    state = {k: v.detach().clone().contiguous() for k, v in hf.state_dict().items() if k not in tied}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def seq2seq(pad: int = 2, images: bool = False) -> Callable[[Any, Any, Any], dict[str, float]]:
    """An encoder-decoder's two outputs: the encoder's last hidden states, and the decoder's over its own
    (causal) input attending to the encoder, against the Hugging Face base model on the same token ids and
    padding masks (padded positions left out on each side). `images`: the encoder also reads one random
    image per prompt, its `mm_tokens_per_image` tokens at positions 1.. (Hugging Face: image-token ids
    there and `pixel_values`; keras-hub: the same pixels channels-last, and those positions)."""
    def f(hf: Any, backbone: Any, cfg: Any) -> dict[str, float]:
        import torch
        vocab = getattr(cfg, "vocab_size", None) or cfg.decoder.vocab_size
        x, m = ids(vocab), mask(pad)
        dx, dm = ids(vocab, seed=2), mask(pad + 1)
        inputs = {"encoder_token_ids": x, "encoder_padding_mask": m, "decoder_token_ids": dx,
                  "decoder_padding_mask": dm}
        extra = {}
        if images:
            size, tok = cfg.encoder.vision_config.image_size, cfg.encoder.image_token_index
            where = np.arange(1, 1 + cfg.encoder.mm_tokens_per_image)
            x = np.where(x == tok, tok + 1, x)
            x[:, where] = tok
            pixels = np.random.RandomState(3).standard_normal((BATCH, 3, size, size)).astype("float32")
            inputs.update(encoder_token_ids=x, images=pixels.transpose(0, 2, 3, 1)[:, None],
                          vision_indices=np.tile(where, (BATCH, 1)).astype("int32"))
            extra["pixel_values"] = torch.tensor(pixels)
        y = call(backbone, inputs)
        t = {"dtype": torch.long}
        with torch.no_grad():
            o = base(hf)(input_ids=torch.tensor(x, **t), attention_mask=torch.tensor(m),
                         decoder_input_ids=torch.tensor(dx, **t), decoder_attention_mask=torch.tensor(dm), **extra)
        return {"encoder": diff(o.encoder_last_hidden_state.numpy(), as_np(y["encoder_sequence_output"]), m),
                "decoder": diff(o.last_hidden_state.numpy(), as_np(y["decoder_sequence_output"]), dm)}
    return f


def hub_config(**keys: Any) -> Callable[[Path, Any], None]:
    """Add keys to the saved config.json that the hub's configs carry (written by older transformers) and
    keras-hub's converter reads, such as BART's `num_hidden_layers`."""
    def f(folder: Path, hf: Any) -> None:
        import json
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **keys}, indent=2))
    return f


def t5gemma2_hub_layout(folder: Path, hf: Any) -> None:
    """The checkpoint as the hub's T5Gemma 2 files have it and keras-hub's converter reads it (SigLIP
    under `vision_tower.vision_model.`, which transformers 5 saves without `vision_model.`), and the
    image processor's config keras-hub's loader reads beside it."""
    import json

    from safetensors.torch import load_file, save_file
    path = str(folder / "model.safetensors")
    state = {k.replace(".vision_tower.", ".vision_tower.vision_model.", 1): v for k, v in load_file(path).items()}
    save_file(state, path, metadata={"format": "pt"})
    (folder / "processor_config.json").write_text(json.dumps(
        {"image_processor": {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "rescale_factor": 1 / 255}}))


_BERTISH = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64)

# grouped-query attention (4 query heads, 2 key/value heads), as T5Gemma has it
_T5GEMMA = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, max_position_embeddings=64, sliding_window=16)

FAMILIES = (
    Family("hf_to_keras_hub/bert", "BertConfig", _BERTISH, "BertForPreTraining",
           encoder(segment_ids=True, pooled=True)),
    Family("hf_to_keras_hub/distilbert", "DistilBertConfig",
           dict(vocab_size=128, dim=32, hidden_dim=64, n_layers=2, n_heads=4, max_position_embeddings=64),
           "DistilBertForMaskedLM", encoder()),
    # two groups of two inner layers: every shared weight set is reached by (group, inner) indices
    Family("hf_to_keras_hub/albert", "AlbertConfig",
           dict(_BERTISH, embedding_size=16, num_hidden_groups=2, inner_group_num=2),
           "AlbertForPreTraining", encoder(segment_ids=True, pooled=True)),
    # layer_norm_eps as roberta-base's config.json has it (keras-hub's backbone fixes 1e-5)
    Family("hf_to_keras_hub/roberta", "RobertaConfig", dict(_BERTISH, max_position_embeddings=66, layer_norm_eps=1e-5),
           "RobertaForMaskedLM", zeroed(("roberta.embeddings.token_type_embeddings.weight",), encoder())),
    Family("hf_to_keras_hub/xlm_roberta", "XLMRobertaConfig",
           dict(_BERTISH, max_position_embeddings=66, layer_norm_eps=1e-5), "XLMRobertaModel", encoder()),
    # no padding: keras-hub's ESM attention masks by token id, and on the TensorFlow backend it reshapes
    # the mask over the queries, not the keys (esm_attention.py), so padded keys stay visible there
    Family("hf_to_keras_hub/esm", "EsmConfig", dict(_BERTISH, pad_token_id=1, position_embedding_type="rotary"),
           "EsmForMaskedLM", encoder(pad=0), prepare=hub_layout),
    Family("hf_to_keras_hub/bart", "BartConfig",
           dict(vocab_size=128, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64),
           "BartForConditionalGeneration", seq2seq(), prepare=hub_config(num_hidden_layers=2)),
    Family("hf_to_keras_hub/t5gemma", "T5GemmaConfig", dict(vocab_size=128, encoder=_T5GEMMA, decoder=_T5GEMMA),
           "T5GemmaForConditionalGeneration", seq2seq()),
    Family("hf_to_keras_hub/t5gemma2", "T5Gemma2Config",
           dict(vocab_size=128, image_token_index=4, decoder=_T5GEMMA, encoder=dict(
               text_config=_T5GEMMA, mm_tokens_per_image=4, vision_config=dict(
                   hidden_size=24, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                   patch_size=8, vision_use_head=False))),
           "T5Gemma2ForConditionalGeneration", seq2seq(images=True), prepare=t5gemma2_hub_layout),
)
