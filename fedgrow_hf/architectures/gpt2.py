"""GPT-2's role table (``GPT2LMHeadModel``).

Pre-LN LayerNorms, learned position embeddings, ``lm_head`` tied to ``wte``, and every block weight a
``Conv1D`` stored [in, out] (:class:`Transposed`), the attention's query, key and value fused in one
``c_attn`` (:data:`Role.FUSED_QKV`). Paths are relative to the ``GPT2LMHeadModel``, like Llama's.
"""

from transformers import AutoModelForCausalLM

from .table import ArchitectureTable, ConfigFields, Role, Transposed

GPT2_TABLE = ArchitectureTable(
    model_type="gpt2",
    layers_path="transformer.h",
    shared_roles={
        "transformer.wte": Role.EMBEDDING,
        "transformer.wpe": Role.EMBEDDING,
        "transformer.ln_f": Role.OUTPUT_NORM,
        "lm_head": Role.EMBEDDING,
    },
    layer_roles={
        "ln_1": Role.LAYER_NORM,
        "attn.c_attn": Transposed(Role.FUSED_QKV),
        "attn.c_proj": Transposed(Role.ATTENTION_OUTPUT),
        "ln_2": Role.LAYER_NORM,
        "mlp.c_fc": Transposed(Role.FFN_IN),
        "mlp.c_proj": Transposed(Role.FFN_OUT),
    },
    fixed_fields=(
        "vocab_size",
        "n_positions",
        "activation_function",
        "layer_norm_epsilon",
        "scale_attn_weights",
        "scale_attn_by_inverse_layer_idx",
        "reorder_and_upcast_attn",
        "add_cross_attention",
    ),
    fields=ConfigFields(num_layers="n_layer", hidden="n_embd", ffn="n_inner", heads="n_head", ffn_multiple_when_unset=4),
    root="model",
    auto_class=AutoModelForCausalLM,
    index_dependent_fields=("scale_attn_by_inverse_layer_idx",),
)
