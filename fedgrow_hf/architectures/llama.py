"""The Llama family's role tables (``LlamaForCausalLM``: Llama, SmolLM, TinyLlama checkpoints; and
``Qwen2ForCausalLM``: Qwen2 and Qwen2.5, the same blocks with biases on the query, key and value).

RMSNorm before each sublayer, SwiGLU FFN (``gate_proj`` and ``up_proj`` are both FFN inputs: the
gate's activation multiplies the up projection neuron by neuron, so copied neurons stay copies),
grouped-query attention (``num_key_value_heads`` key/value heads, each read by a group of query
heads), rotary position embeddings, and an ``lm_head`` that may be tied to ``embed_tokens``. Paths are
relative to the ``LlamaForCausalLM``: the head is grown from the source's head (a tied source's head is
its embedding table).
"""

from dataclasses import replace

from transformers import AutoModelForCausalLM

from .table import ArchitectureTable, ConfigFields, Role

LLAMA_TABLE = ArchitectureTable(
    model_type="llama",
    layers_path="model.layers",
    shared_roles={
        "model.embed_tokens": Role.EMBEDDING,
        "model.norm": Role.OUTPUT_NORM,
        "lm_head": Role.EMBEDDING,
    },
    layer_roles={
        "input_layernorm": Role.RMS_NORM,
        "self_attn.q_proj": Role.QUERY,
        "self_attn.k_proj": Role.KEY,
        "self_attn.v_proj": Role.VALUE,
        "self_attn.o_proj": Role.GROUPED_ATTENTION_OUTPUT,
        "post_attention_layernorm": Role.RMS_NORM,
        "mlp.gate_proj": Role.FFN_IN,
        "mlp.up_proj": Role.FFN_IN,
        "mlp.down_proj": Role.FFN_OUT,
    },
    fixed_fields=("vocab_size", "hidden_act", "rms_norm_eps", "rope_parameters", "attention_bias", "mlp_bias"),
    fields=ConfigFields(kv_heads="num_key_value_heads", head_dim="head_dim"),
    root="model",
    auto_class=AutoModelForCausalLM,
    rotary=True,
)

# Qwen2's biases are fixed by the class (q/k/v have one, o_proj and the MLP none), and the table's bias
# axes cover them. Sliding-window attention is a per-layer choice (``layer_types``) by a layer's index:
# a source and target must agree on using it.
QWEN2_TABLE = replace(
    LLAMA_TABLE,
    model_type="qwen2",
    fixed_fields=("vocab_size", "hidden_act", "rms_norm_eps", "rope_parameters", "use_sliding_window", "sliding_window"),
    index_dependent_fields=("use_sliding_window",),  # layers from max_window_layers on slide
)
