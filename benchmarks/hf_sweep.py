"""Training parity of Hugging Face transformers architectures through ``torch.compile``.

Each model is built from a tiny random config (2 layers, hidden 32-64, small vocabulary,
dropout 0 unless `--dropout`), and trained for 3 SGD steps eagerly and compiled with
``aotgraph.backend(compiler)`` from identical deep copies; the loss, every parameter's gradient
and the updated parameters are compared. A second phase changes the sequence length (or batch)
across calls (automatic dynamic shapes), checks each call against eager too and counts compiles:
aotgraph's entries against torch's ``aot_eager`` backend's on the same sequence of sizes.

    python benchmarks/hf_sweep.py                       # the whole sweep, eager compiler
    python benchmarks/hf_sweep.py gpt2 llama            # models whose name starts with these
    python benchmarks/hf_sweep.py --inductor            # also aotgraph.backend("inductor") on a few
    python benchmarks/hf_sweep.py gpt2 --inductor --inductor-dynamic   # ... with changing sizes too
    python benchmarks/hf_sweep.py --torch aot_eager     # torch's own backend in aotgraph's place
    python benchmarks/hf_sweep.py --dropout 0.1         # dropout on: compiled and eager draw the same masks
    python benchmarks/hf_sweep.py --api module --inductor-only   # aotgraph.aot_module (no Dynamo) instead
    python benchmarks/hf_sweep.py --api module-dynamic           # aot_module(dynamic=True) over changing sizes

The table printed last has one row per model, attention implementation and compiler: status
(ok / mismatch / error and its first line), the largest gradient error relative to that
gradient's largest magnitude, and the compiles ours vs aot_eager's in the dynamic phase.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import os
import sys
import tempfile
import time
import traceback

os.environ.setdefault("AOTGRAPH_CACHE_DIR", tempfile.mkdtemp(prefix="aotgraph_hf_sweep_"))
os.environ.setdefault("AOTGRAPH_PROGRESS", "0")

import torch  # noqa: E402
import transformers  # noqa: E402

import aotgraph  # noqa: E402

RTOL = 1e-4         # of a tensor's largest magnitude
ATOL = 1e-7
VOCAB = 96
TRAIN_SEQ = 12
DYNAMIC_SEQS = (8, 12, 16, 20)


DROPOUT = 0.0  # --dropout: every dropout probability of the configs (layer drop stays off)
API = "backend"  # --api: "module" compiles with aotgraph.aot_module instead of torch.compile


def quiet_config(config):
    """Dropout at `DROPOUT` and layer drop off everywhere in `config` (and its sub-configs)."""
    for name in list(vars(config)):
        value = getattr(config, name)
        if isinstance(value, transformers.PretrainedConfig):
            quiet_config(value)
        elif isinstance(value, float) and ("dropout" in name or "pdrop" in name or name == "layerdrop"):
            setattr(config, name, 0.0 if name == "layerdrop" else DROPOUT)
    return config


def text_inputs(batch, seq, mask=True, labels=True, token_types=False, seed=0):
    generator = torch.Generator().manual_seed(seed + seq * 7 + batch)
    ids = torch.randint(3, VOCAB, (batch, seq), generator=generator)
    inputs = {"input_ids": ids}
    if mask:
        attention_mask = torch.ones(batch, seq, dtype=torch.long)
        attention_mask[0, -3:] = 0   # right padding on the first row
        inputs["attention_mask"] = attention_mask
    if labels:
        inputs["labels"] = ids.clone()
    if token_types:
        inputs["token_type_ids"] = torch.zeros(batch, seq, dtype=torch.long)
    return inputs


def class_inputs(batch, seq, num_labels=3, **kw):
    inputs = text_inputs(batch, seq, labels=False, **kw)
    inputs["labels"] = torch.arange(batch) % num_labels
    return inputs


def make(model_cls, config, attn):
    config = quiet_config(config)
    config._attn_implementation = attn
    torch.manual_seed(0)
    model = model_cls(config)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = DROPOUT
    return model


def llm(config_cls, model_name, **extra):
    def build(attn):
        kw = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=64)
        kw.update(extra)
        model = make(getattr(transformers, model_name), getattr(transformers, config_cls)(**kw), attn)
        return model, lambda batch, seq: text_inputs(batch, seq)
    return build


def encoder(config_cls, model_name, token_types=True, **extra):
    def build(attn):
        kw = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=64, num_labels=3)
        kw.update(extra)
        model = make(getattr(transformers, model_name), getattr(transformers, config_cls)(**kw), attn)
        return model, lambda batch, seq: class_inputs(batch, seq, token_types=token_types)
    return build


def gpt2(attn):
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64)
    return make(transformers.GPT2LMHeadModel, config, attn), lambda b, s: text_inputs(b, s)


def opt(attn):
    config = transformers.OPTConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    ffn_dim=128, max_position_embeddings=64, word_embed_proj_dim=64)
    return make(transformers.OPTForCausalLM, config, attn), lambda b, s: text_inputs(b, s)


def bloom(attn):
    config = transformers.BloomConfig(vocab_size=VOCAB, hidden_size=64, n_layer=2, n_head=4)
    return make(transformers.BloomForCausalLM, config, attn), lambda b, s: text_inputs(b, s)


def falcon(attn):
    config = transformers.FalconConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       new_decoder_architecture=False, multi_query=True, alibi=False)
    return make(transformers.FalconForCausalLM, config, attn), lambda b, s: text_inputs(b, s)


def t5(attn):
    config = transformers.T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                   num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
                                   decoder_start_token_id=0, pad_token_id=0)

    def inputs(batch, seq):
        x = text_inputs(batch, seq)
        x["labels"] = x["labels"][:, : max(seq // 2, 2)].contiguous()
        return x
    return make(transformers.T5ForConditionalGeneration, config, attn), inputs


def seq2seq(config_cls, model_name, **extra):
    """An encoder-decoder of the BART family (2 + 2 layers, width 64), `extra` over the defaults."""
    def build(attn):
        kw = dict(vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64,
                  pad_token_id=0, decoder_start_token_id=0, eos_token_id=2, bos_token_id=1)
        kw.update(extra)
        model = make(getattr(transformers, model_name), getattr(transformers, config_cls)(**kw), attn)
        return model, lambda b, s: text_inputs(b, s)
    return build


def vit(attn):
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                    image_size=32, patch_size=8, num_labels=3)

    def inputs(batch, seq):
        generator = torch.Generator().manual_seed(batch * 31 + seq)
        return {"pixel_values": torch.randn(batch, 3, 32, 32, generator=generator),
                "labels": torch.arange(batch) % 3}
    return make(transformers.ViTForImageClassification, config, attn), inputs


def clip_vision(attn):
    config = transformers.CLIPVisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=128, image_size=32, patch_size=8, projection_dim=32)

    def inputs(batch, seq):
        generator = torch.Generator().manual_seed(batch * 31 + seq)
        return {"pixel_values": torch.randn(batch, 3, 32, 32, generator=generator)}
    return make(transformers.CLIPVisionModelWithProjection, config, attn), inputs


def whisper(attn):
    config = transformers.WhisperConfig(vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2,
                                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                                        decoder_ffn_dim=128, num_mel_bins=16, max_source_positions=16,
                                        max_target_positions=32, pad_token_id=0, decoder_start_token_id=1,
                                        bos_token_id=1, eos_token_id=2)

    def inputs(batch, seq):
        generator = torch.Generator().manual_seed(batch * 31 + seq)
        labels = torch.randint(3, VOCAB, (batch, seq), generator=generator)
        return {"input_features": torch.randn(batch, 16, 32, generator=generator), "labels": labels}
    return make(transformers.WhisperForConditionalGeneration, config, attn), inputs


def wav2vec2(attn):
    config = transformers.Wav2Vec2Config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
                                         conv_kernel=(10, 3), num_feat_extract_layers=2,
                                         num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
                                         mask_time_prob=0.0, ctc_loss_reduction="mean", pad_token_id=0)

    def inputs(batch, seq):
        generator = torch.Generator().manual_seed(batch * 31 + seq)
        return {"input_values": torch.randn(batch, 40 * seq, generator=generator),
                "labels": torch.randint(3, VOCAB, (batch, 4), generator=generator)}
    return make(transformers.Wav2Vec2ForCTC, config, attn), inputs


def mobilebert(attn):
    config = transformers.MobileBertConfig(vocab_size=VOCAB, hidden_size=64, embedding_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=64, intra_bottleneck_size=32,
                                           true_hidden_size=32, num_feedforward_networks=2, max_position_embeddings=64,
                                           num_labels=3)
    return make(transformers.MobileBertForSequenceClassification, config, attn), \
        lambda b, s: class_inputs(b, s, token_types=True)


def deberta_v2(attn):
    config = transformers.DebertaV2Config(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=128, max_position_embeddings=64, relative_attention=True,
                                          position_buckets=16, pos_att_type=["p2c", "c2p"], num_labels=3)
    return make(transformers.DebertaV2ForSequenceClassification, config, attn), \
        lambda b, s: class_inputs(b, s, token_types=True)


def image_inputs(num_labels=3, labels=True, size=32, segmentation=False):
    def inputs(batch, seq):
        generator = torch.Generator().manual_seed(batch * 31 + seq)
        x = {"pixel_values": torch.randn(batch, 3, size, size, generator=generator)}
        if segmentation:
            x["labels"] = torch.randint(0, num_labels, (batch, size, size), generator=generator)
        elif labels:
            x["labels"] = torch.arange(batch) % num_labels
        return x
    return inputs


def vision(config_cls, model_name, inputs=None, **kw):
    def build(attn):
        config = getattr(transformers, config_cls)(num_labels=3, **kw)
        return make(getattr(transformers, model_name), config, attn), inputs or image_inputs()
    return build


def hubert(attn):
    config = transformers.HubertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
                                       conv_kernel=(10, 3), num_feat_extract_layers=2, num_conv_pos_embeddings=8,
                                       num_conv_pos_embedding_groups=4, mask_time_prob=0.0,
                                       ctc_loss_reduction="mean", pad_token_id=0)

    def inputs(batch, seq):
        generator = torch.Generator().manual_seed(batch * 31 + seq)
        return {"input_values": torch.randn(batch, 40 * seq, generator=generator),
                "labels": torch.randint(3, VOCAB, (batch, 4), generator=generator)}
    return make(transformers.HubertForCTC, config, attn), inputs


def checkpointed(build):
    """`build`'s model with gradient checkpointing on (torch.utils.checkpoint, use_reentrant=False)."""
    def build_checkpointed(attn):
        model, inputs = build(attn)
        model.gradient_checkpointing_enable()
        return model, inputs
    return build_checkpointed


MODELS = {
    "gpt2": (gpt2, ("eager", "sdpa")),
    "gpt_neox": (llm("GPTNeoXConfig", "GPTNeoXForCausalLM"), ("eager", "sdpa")),
    "llama": (llm("LlamaConfig", "LlamaForCausalLM", num_key_value_heads=2), ("eager", "sdpa")),
    "mistral": (llm("MistralConfig", "MistralForCausalLM", num_key_value_heads=2, sliding_window=8),
                ("eager", "sdpa")),
    "qwen2": (llm("Qwen2Config", "Qwen2ForCausalLM", num_key_value_heads=2), ("eager", "sdpa")),
    "phi": (llm("PhiConfig", "PhiForCausalLM"), ("eager", "sdpa")),
    "opt": (opt, ("eager", "sdpa")),
    "bloom": (bloom, ("eager",)),
    "falcon": (falcon, ("eager", "sdpa")),
    "bert": (encoder("BertConfig", "BertForSequenceClassification"), ("eager", "sdpa")),
    "roberta": (llm("RobertaConfig", "RobertaForMaskedLM", pad_token_id=1), ("eager", "sdpa")),
    "distilbert": (lambda attn: (make(transformers.DistilBertForSequenceClassification, transformers.DistilBertConfig(
        vocab_size=VOCAB, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=64, num_labels=3),
        attn), lambda b, s: class_inputs(b, s)), ("eager", "sdpa")),
    "albert": (encoder("AlbertConfig", "AlbertForSequenceClassification", embedding_size=32), ("eager", "sdpa")),
    "electra": (llm("ElectraConfig", "ElectraForMaskedLM", embedding_size=32), ("eager", "sdpa")),
    "t5": (t5, ("eager",)),
    "bart": (seq2seq("BartConfig", "BartForConditionalGeneration", pad_token_id=1, bos_token_id=0,
                     decoder_start_token_id=2), ("eager", "sdpa")),
    "vit": (vit, ("eager", "sdpa")),
    "clip_vision": (clip_vision, ("eager", "sdpa")),
    "whisper": (whisper, ("eager",)),
    "wav2vec2": (wav2vec2, ("eager",)),
    "mobilebert": (mobilebert, ("eager",)),
    "deberta_v2": (deberta_v2, ("eager",)),
    "gemma": (llm("GemmaConfig", "GemmaForCausalLM", num_key_value_heads=1, head_dim=16, pad_token_id=0),
              ("eager", "sdpa")),
    "gemma2": (llm("Gemma2Config", "Gemma2ForCausalLM", num_key_value_heads=2, head_dim=16, sliding_window=8,
                   query_pre_attn_scalar=16, pad_token_id=0), ("eager",)),
    "qwen3": (llm("Qwen3Config", "Qwen3ForCausalLM", num_key_value_heads=2, head_dim=16), ("eager", "sdpa")),
    "mixtral": (llm("MixtralConfig", "MixtralForCausalLM", num_key_value_heads=2, num_local_experts=4,
                    num_experts_per_tok=2, output_router_logits=True), ("eager", "sdpa")),
    "qwen2_moe": (llm("Qwen2MoeConfig", "Qwen2MoeForCausalLM", num_key_value_heads=2, num_experts=4,
                      num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=64,
                      output_router_logits=True), ("sdpa",)),
    "moe_loop_mixtral": (llm("MixtralConfig", "MixtralForCausalLM", num_key_value_heads=2, num_local_experts=4,
                             num_experts_per_tok=2, output_router_logits=True, experts_implementation="eager"),
                         ("sdpa",)),
    "phi3": (llm("Phi3Config", "Phi3ForCausalLM", num_key_value_heads=2, pad_token_id=0,
                  bos_token_id=1, eos_token_id=2), ("eager", "sdpa")),
    "stablelm": (llm("StableLmConfig", "StableLmForCausalLM", num_key_value_heads=2, partial_rotary_factor=0.25,
                     use_qkv_bias=True), ("eager", "sdpa")),
    "gptj": (lambda attn: (make(transformers.GPTJForCausalLM, transformers.GPTJConfig(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=64, bos_token_id=1,
        eos_token_id=2), attn),
        lambda b, s: text_inputs(b, s)), ("eager",)),
    "mpt": (lambda attn: (make(transformers.MptForCausalLM, transformers.MptConfig(
        vocab_size=VOCAB, d_model=64, n_layers=2, n_heads=4, expansion_ratio=2, max_seq_len=64), attn),
        lambda b, s: text_inputs(b, s)), ("eager",)),
    "xlnet": (lambda attn: (make(transformers.XLNetForSequenceClassification, transformers.XLNetConfig(
        vocab_size=VOCAB, d_model=64, n_layer=2, n_head=4, d_inner=128, num_labels=3), attn),
        lambda b, s: class_inputs(b, s, token_types=True)), ("eager",)),
    "modernbert": (llm("ModernBertConfig", "ModernBertForMaskedLM", global_attn_every_n_layers=2,
                       local_attention=8, pad_token_id=0, eos_token_id=2, bos_token_id=1, cls_token_id=1,
                       sep_token_id=2), ("eager", "sdpa")),
    "esm": (llm("EsmConfig", "EsmForMaskedLM", pad_token_id=1, mask_token_id=2,
                position_embedding_type="rotary"), ("eager", "sdpa")),
    "swin": (vision("SwinConfig", "SwinForImageClassification", image_size=32, patch_size=4, embed_dim=16,
                    depths=[1, 1], num_heads=[2, 2], window_size=4), ("eager", "sdpa")),
    "convnext": (vision("ConvNextConfig", "ConvNextForImageClassification", hidden_sizes=[16, 32],
                        depths=[1, 1], num_stages=2, image_size=32), ("eager",)),
    "segformer": (vision("SegformerConfig", "SegformerForSemanticSegmentation",
                         image_inputs(segmentation=True), num_encoder_blocks=2, depths=[1, 1],
                         sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
                         patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2], decoder_hidden_size=32),
                  ("eager",)),
    "marian": (seq2seq("MarianConfig", "MarianMTModel", bos_token_id=None), ("eager", "sdpa")),
    "hubert": (hubert, ("eager",)),
    "ckpt_llama": (checkpointed(llm("LlamaConfig", "LlamaForCausalLM", num_key_value_heads=2)), ("sdpa",)),
    "ckpt_bert": (checkpointed(encoder("BertConfig", "BertForSequenceClassification")), ("eager",)),
    # session 31: 42 more architectures
    "olmo": (llm("OlmoConfig", "OlmoForCausalLM", num_key_value_heads=2, pad_token_id=0), ("eager", "sdpa")),
    "olmo2": (llm("Olmo2Config", "Olmo2ForCausalLM", num_key_value_heads=2, pad_token_id=0), ("eager", "sdpa")),
    "granite": (llm("GraniteConfig", "GraniteForCausalLM", num_key_value_heads=2), ("eager", "sdpa")),
    "cohere": (llm("CohereConfig", "CohereForCausalLM", num_key_value_heads=2, pad_token_id=0), ("eager", "sdpa")),
    "starcoder2": (llm("Starcoder2Config", "Starcoder2ForCausalLM", num_key_value_heads=2), ("eager", "sdpa")),
    "nemotron": (llm("NemotronConfig", "NemotronForCausalLM", num_key_value_heads=2, pad_token_id=0),
                 ("eager", "sdpa")),
    "persimmon": (llm("PersimmonConfig", "PersimmonForCausalLM", pad_token_id=0), ("eager", "sdpa")),
    "glm": (llm("GlmConfig", "GlmForCausalLM", num_key_value_heads=2, head_dim=16, pad_token_id=0), ("eager", "sdpa")),
    "helium": (llm("HeliumConfig", "HeliumForCausalLM", num_key_value_heads=2, head_dim=16, pad_token_id=0),
               ("eager", "sdpa")),
    "smollm3": (llm("SmolLM3Config", "SmolLM3ForCausalLM", num_key_value_heads=2, pad_token_id=0), ("eager", "sdpa")),
    "qwen3_moe": (llm("Qwen3MoeConfig", "Qwen3MoeForCausalLM", num_key_value_heads=2, head_dim=16, num_experts=4,
                      num_experts_per_tok=2, moe_intermediate_size=32), ("eager", "sdpa")),
    "olmoe": (llm("OlmoeConfig", "OlmoeForCausalLM", num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                  pad_token_id=0), ("eager", "sdpa")),
    "granitemoe": (llm("GraniteMoeConfig", "GraniteMoeForCausalLM", num_key_value_heads=2, num_local_experts=4,
                       num_experts_per_tok=2), ("eager", "sdpa")),
    "phimoe": (llm("PhimoeConfig", "PhimoeForCausalLM", num_key_value_heads=2, num_local_experts=4,
                   num_experts_per_tok=2), ("eager", "sdpa")),
    "deepseek_v3": (llm("DeepseekV3Config", "DeepseekV3ForCausalLM", num_key_value_heads=4, n_routed_experts=4,
                        num_experts_per_tok=2, moe_intermediate_size=32, first_k_dense_replace=1, kv_lora_rank=16,
                        q_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, n_group=1,
                        topk_group=1, pad_token_id=0), ("eager", "sdpa")),
    "xglm": (lambda attn: (make(transformers.XGLMForCausalLM, transformers.XGLMConfig(
        vocab_size=VOCAB, d_model=64, num_layers=2, attention_heads=4, ffn_dim=128, max_position_embeddings=64,
        pad_token_id=0), attn), lambda b, s: text_inputs(b, s)), ("eager",)),
    "codegen": (lambda attn: (make(transformers.CodeGenForCausalLM, transformers.CodeGenConfig(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, rotary_dim=8), attn),
        lambda b, s: text_inputs(b, s)), ("eager",)),
    "gpt_bigcode": (lambda attn: (make(transformers.GPTBigCodeForCausalLM, transformers.GPTBigCodeConfig(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64), attn),
        lambda b, s: text_inputs(b, s)), ("eager", "sdpa")),
    "mamba": (lambda attn: (make(transformers.MambaForCausalLM, transformers.MambaConfig(
        vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4), attn),
        lambda b, s: text_inputs(b, s, mask=False)), ("eager",)),
    "falcon_mamba": (lambda attn: (make(transformers.FalconMambaForCausalLM, transformers.FalconMambaConfig(
        vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4), attn),
        lambda b, s: text_inputs(b, s, mask=False)), ("eager",)),
    "rwkv": (lambda attn: (make(transformers.RwkvForCausalLM, transformers.RwkvConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, attention_hidden_size=32, intermediate_size=64,
        context_length=64), attn), lambda b, s: text_inputs(b, s, mask=False)), ("eager",)),
    "funnel": (lambda attn: (make(transformers.FunnelForSequenceClassification, transformers.FunnelConfig(
        vocab_size=VOCAB, block_sizes=[1, 1], d_model=64, n_head=4, d_head=16, d_inner=128, num_labels=3), attn),
        lambda b, s: class_inputs(b, s, token_types=True)), ("eager",)),
    "fnet": (encoder("FNetConfig", "FNetForSequenceClassification"), ("eager",)),
    "squeezebert": (encoder("SqueezeBertConfig", "SqueezeBertForSequenceClassification", embedding_size=64),
                    ("eager",)),
    "convbert": (encoder("ConvBertConfig", "ConvBertForSequenceClassification", embedding_size=64), ("eager",)),
    "megatron_bert": (encoder("MegatronBertConfig", "MegatronBertForSequenceClassification"), ("eager",)),
    "xlm_roberta": (encoder("XLMRobertaConfig", "XLMRobertaForSequenceClassification", pad_token_id=1),
                    ("eager", "sdpa")),
    "bigbird": (encoder("BigBirdConfig", "BigBirdForSequenceClassification", attention_type="original_full"),
                ("eager",)),
    "longformer": (encoder("LongformerConfig", "LongformerForSequenceClassification", attention_window=4,
                           pad_token_id=1), ("eager",)),
    "dinov2": (vision("Dinov2Config", "Dinov2ForImageClassification", hidden_size=64, num_hidden_layers=2,
                      num_attention_heads=4, image_size=32, patch_size=8), ("eager", "sdpa")),
    "beit": (vision("BeitConfig", "BeitForImageClassification", hidden_size=64, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=8,
                    use_relative_position_bias=True), ("eager",)),
    "deit": (vision("DeiTConfig", "DeiTForImageClassification", hidden_size=64, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=8), ("eager", "sdpa")),
    "resnet": (vision("ResNetConfig", "ResNetForImageClassification", embedding_size=16, hidden_sizes=[16, 32],
                      depths=[1, 1]), ("eager",)),
    "regnet": (vision("RegNetConfig", "RegNetForImageClassification", embedding_size=16, hidden_sizes=[16, 32],
                      depths=[1, 1], groups_width=8), ("eager",)),
    "levit": (vision("LevitConfig", "LevitForImageClassification", image_size=32, hidden_sizes=[32, 48, 64],
                     num_attention_heads=[1, 2, 2], depths=[1, 1, 1], key_dim=[8, 8, 8]), ("eager",)),
    "mobilevit": (vision("MobileViTConfig", "MobileViTForImageClassification", image_size=32,
                         hidden_sizes=[32, 40, 48], neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64]), ("eager",)),
    "poolformer": (vision("PoolFormerConfig", "PoolFormerForImageClassification", hidden_sizes=[16, 32, 48, 64],
                          depths=[1, 1, 1, 1]), ("eager",)),
    "mobilenet_v2": (vision("MobileNetV2Config", "MobileNetV2ForImageClassification", image_size=32,
                            depth_multiplier=0.35), ("eager",)),
    "convnextv2": (vision("ConvNextV2Config", "ConvNextV2ForImageClassification", hidden_sizes=[16, 32],
                          depths=[1, 1], num_stages=2), ("eager",)),
    "pegasus": (seq2seq("PegasusConfig", "PegasusForConditionalGeneration"), ("eager", "sdpa")),
    "mbart": (seq2seq("MBartConfig", "MBartForConditionalGeneration"), ("eager", "sdpa")),
    "blenderbot": (seq2seq("BlenderbotConfig", "BlenderbotForConditionalGeneration"), ("eager", "sdpa")),
    "m2m100": (seq2seq("M2M100Config", "M2M100ForConditionalGeneration"), ("eager", "sdpa")),
}
INDUCTOR_MODELS = ("gpt2", "llama", "bert", "t5")


def loss_of(output) -> torch.Tensor:
    if getattr(output, "loss", None) is not None:
        return output.loss
    tensor = output[0] if not isinstance(output, torch.Tensor) else output
    weights = torch.linspace(0.5, 1.5, tensor.numel()).reshape(tensor.shape)
    return (tensor * weights).sum()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.abs().max().item() if expected.numel() else 0.0
    return (actual - expected).abs().max().item() / max(scale, ATOL / RTOL) if expected.numel() else 0.0


class Comparison:
    """The worst errors seen: loss, gradient, parameter after the SGD step."""

    def __init__(self):
        self.worst = {"loss": 0.0, "grad": 0.0, "param": 0.0}
        self.where = {}
        self.missing = []
        self.compared = 0

    def add(self, kind: str, what: str, actual, expected):
        if actual is None or expected is None:
            if (actual is None) != (expected is None):
                self.missing.append(what)
            return
        self.compared += kind == "grad"
        error = relative_error(actual.detach().float(), expected.detach().float())
        if error != error:  # NaN
            error = float("inf")
        if error > self.worst[kind]:
            self.worst[kind], self.where[kind] = error, what

    def compare_step(self, step, eager, compiled, eager_loss, compiled_loss):
        self.add("loss", f"loss@{step}", compiled_loss, eager_loss)
        for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled.parameters()):
            self.add("grad", f"{name}.grad@{step}", p_compiled.grad, p_eager.grad)

    def compare_params(self, step, eager, compiled):
        for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled.parameters()):
            self.add("param", f"{name}@{step}", p_compiled, p_eager)

    @property
    def ok(self) -> bool:
        return not self.missing and all(v <= RTOL for v in self.worst.values())

    def summary(self) -> str:
        if self.missing:
            return f"grad missing/extra: {self.missing[0]}"
        kind = max(self.worst, key=self.worst.get)
        where = f" at {self.where[kind]}" if kind in self.where else ""
        return f"{self.compared} gradients compared; worst {kind} {self.worst[kind]:.2e}{where}"


def train(eager, compiled, make_inputs, shapes, comparison):
    """SGD steps on both copies, one per (batch, seq) in `shapes`, compared step by step."""
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (eager, compiled)]
    for step, (batch, seq) in enumerate(shapes):
        inputs = make_inputs(batch, seq)
        losses = []
        for module, optimizer in zip((eager, compiled), optimizers):
            optimizer.zero_grad(set_to_none=True)
            torch.manual_seed(1000 + step)  # both draw the same dropout masks (with --dropout)
            loss = loss_of(module(**inputs))
            loss.backward()
            losses.append(loss.detach())
        comparison.compare_step(step, eager, compiled, *losses)
        for optimizer in optimizers:
            optimizer.step()
        comparison.compare_params(step, eager, compiled)


class CountingBackend:
    """A torch.compile backend counting Dynamo's graphs handed to it."""

    def __init__(self, inner):
        self.inner, self.graphs = inner, 0

    def __call__(self, graph_module, example_inputs, **kw):
        self.graphs += 1
        return self.inner(graph_module, example_inputs, **kw)


def make_backend(system: str):
    if system in ("eager", "inductor"):
        return aotgraph.backend(compiler=system)
    from torch._dynamo.backends.registry import lookup_backend
    return lookup_backend(system.removeprefix("torch_"))


def compiles_of(backend: CountingBackend) -> int:
    """aotgraph: its entries (one per graph and input signature); torch's: the graphs it got."""
    entries = getattr(backend.inner, "entries", None)
    return len(entries) if entries is not None else backend.graphs


def _without_cache(model, make_inputs):
    """`make_inputs` with ``use_cache=False`` where the model takes it: a language model returns
    its key/value cache object otherwise, which aot_module refuses as an output it cannot see into."""
    if "use_cache" not in inspect.signature(model.forward).parameters:
        return make_inputs
    return lambda batch, seq: dict(make_inputs(batch, seq), use_cache=False)


def run_one(name: str, attn: str, system: str, dynamic_phase: bool) -> dict:
    build, _ = MODELS[name]
    row = {"model": name, "attn": attn, "system": system}
    started = time.perf_counter()
    torch._dynamo.reset()
    model, make_inputs = build(attn)
    model.train()
    comparison = Comparison()
    backend = CountingBackend(make_backend(system))
    try:
        eager = copy.deepcopy(model)
        if API in ("module", "module-dynamic"):  # the drop-in path: no Dynamo, so no graph breaks
            compiled = aotgraph.aot_module(copy.deepcopy(model), system, dynamic=API == "module-dynamic")
            make_inputs = _without_cache(model, make_inputs)
        else:
            compiled = torch.compile(copy.deepcopy(model), backend=backend)
        train(eager, compiled, make_inputs, [(2, TRAIN_SEQ)] * 3, comparison)
        row["static_compiles"] = compiles_of(backend)
        if API == "module-dynamic":  # the same compiled module over the changing sizes: its entries counted
            train(eager, compiled, make_inputs, [(2, seq) for seq in DYNAMIC_SEQS] + [(3, DYNAMIC_SEQS[-1])],
                  comparison)
            row["compiles"] = len(compiled.aotgraph_entries)
        if API != "backend":
            dynamic_phase = False
        if dynamic_phase:
            torch._dynamo.reset()
            shapes = [(2, seq) for seq in DYNAMIC_SEQS] + [(3, DYNAMIC_SEQS[-1])]
            backend = CountingBackend(make_backend(system))
            eager = copy.deepcopy(model)
            compiled = torch.compile(copy.deepcopy(model), backend=backend)
            train(eager, compiled, make_inputs, shapes, comparison)
            row["compiles"] = compiles_of(backend)
            row["graphs"] = backend.graphs
            torch._dynamo.reset()
            reference = CountingBackend(make_backend("aot_eager"))
            baseline = torch.compile(copy.deepcopy(model), backend=reference)
            for batch, seq in shapes:
                loss_of(baseline(**make_inputs(batch, seq))).backward()
            row["torch_compiles"] = reference.graphs
        row["status"] = "ok" if comparison.ok else "mismatch"
        row["detail"] = comparison.summary()
    except Exception as error:  # noqa: BLE001 - one model's failure must not stop the sweep
        row["status"] = "error"
        row["detail"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        row["traceback"] = traceback.format_exc()
    row["grad_error"] = comparison.worst["grad"]
    row["seconds"] = time.perf_counter() - started
    return row


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':<13} {'attn':<6} {'system':<9} {'status':<9} {'grad err':>9} {'compiles':>8} "
             f"{'aot_eager':>9} {'s':>5}  detail"]
    for r in rows:
        lines.append(f"{r['model']:<13} {r['attn']:<6} {r['system']:<9} {r['status']:<9} {r['grad_error']:9.1e} "
                     f"{str(r.get('compiles', '-')):>8} {str(r.get('torch_compiles', '-')):>9} {r['seconds']:5.0f}  "
                     f"{r['detail'][:110]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (prefixes) to run; default: all")
    parser.add_argument("--attn", choices=("eager", "sdpa"), help="only this attention implementation")
    parser.add_argument("--inductor", action="store_true", help=f"also aotgraph with Inductor on {INDUCTOR_MODELS}")
    parser.add_argument("--inductor-only", action="store_true",
                        help="only aotgraph-with-Inductor rows, on every named model (one attention each)")
    parser.add_argument("--inductor-dynamic", action="store_true",
                        help="the Inductor rows get the changing-size phase too (symbolic graphs through Inductor)")
    parser.add_argument("--torch", metavar="BACKEND", help="run torch's backend (aot_eager, inductor) instead")
    parser.add_argument("--no-dynamic", action="store_true", help="skip the changing-size phase")
    parser.add_argument("--dropout", type=float, default=0.0, help="every dropout probability (default 0)")
    parser.add_argument("--tracebacks", action="store_true", help="print each error's traceback")
    parser.add_argument("--api", choices=("backend", "module", "module-dynamic"), default="backend",
                        help="module: aotgraph.aot_module(model, compiler) instead of torch.compile (no changing "
                             "sizes); module-dynamic: aot_module(..., dynamic=True), trained on the changing sizes "
                             "too (compiles: its entries)")
    args = parser.parse_args()
    global DROPOUT, API
    DROPOUT, API = args.dropout, args.api
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    names = [n for n in MODELS if not args.models or any(n.startswith(p) for p in args.models)]
    plan = []
    for name in names:
        for attn in MODELS[name][1]:
            if args.attn and attn != args.attn:
                continue
            if not args.inductor_only:
                plan.append((name, attn, f"torch_{args.torch}" if args.torch else "eager"))
    if args.inductor_only:
        plan += [(n, args.attn or ("sdpa" if "sdpa" in MODELS[n][1] else "eager"), "inductor") for n in names
                 if not args.attn or args.attn in MODELS[n][1]]
    elif args.inductor:
        plan += [(n, "sdpa" if "sdpa" in MODELS[n][1] else "eager", "inductor") for n in INDUCTOR_MODELS if n in names]
    rows = []
    for name, attn, system in plan:
        row = run_one(name, attn, system,
                      dynamic_phase=not args.no_dynamic and (system != "inductor" or args.inductor_dynamic))
        rows.append(row)
        print(f"{name} {attn} {system}: {row['status']} {row['detail'][:160]} ({row['seconds']:.0f} s)", flush=True)
        if args.tracebacks and "traceback" in row:
            print(row["traceback"], flush=True)
    print()
    print(format_table(rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
