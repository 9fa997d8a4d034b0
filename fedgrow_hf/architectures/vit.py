"""ViT's role table (``ViTModel`` and ``ViTForImageClassification``, base model ``model.vit``)."""

from .table import ArchitectureTable, Role

VIT_TABLE = ArchitectureTable(
    model_type="vit",
    layers_path="layers",
    shared_roles={
        "embeddings.cls_token": Role.RESIDUAL_TENSOR,
        "embeddings.mask_token": Role.RESIDUAL_TENSOR,
        "embeddings.position_embeddings": Role.RESIDUAL_TENSOR,
        "embeddings.patch_embeddings.projection": Role.PATCH_EMBEDDING,
        "layernorm": Role.LAYER_NORM,
        "pooler.dense": Role.RESIDUAL_DENSE,
    },
    layer_roles={
        "attention.q_proj": Role.QUERY,
        "attention.k_proj": Role.KEY,
        "attention.v_proj": Role.VALUE,
        "attention.o_proj": Role.ATTENTION_OUTPUT,
        "layernorm_before": Role.LAYER_NORM,
        "layernorm_after": Role.LAYER_NORM,
        "mlp.fc1": Role.FFN_IN,
        "mlp.fc2": Role.FFN_OUT,
    },
    fixed_fields=("image_size", "patch_size", "num_channels", "hidden_act", "qkv_bias"),
    norm_placement="pre",
)
