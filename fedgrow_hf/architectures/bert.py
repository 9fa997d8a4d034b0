"""BERT's role table (``BertModel`` and every ``BertFor*`` head, whose base model is ``model.bert``)."""

from .table import ArchitectureTable, Role

BERT_TABLE = ArchitectureTable(
    model_type="bert",
    layers_path="encoder.layer",
    shared_roles={
        "embeddings.word_embeddings": Role.EMBEDDING,
        "embeddings.position_embeddings": Role.EMBEDDING,
        "embeddings.token_type_embeddings": Role.EMBEDDING,
        "embeddings.LayerNorm": Role.LAYER_NORM,
        "pooler.dense": Role.RESIDUAL_DENSE,
    },
    layer_roles={
        "attention.self.query": Role.QUERY,
        "attention.self.key": Role.KEY,
        "attention.self.value": Role.VALUE,
        "attention.output.dense": Role.ATTENTION_OUTPUT,
        "attention.output.LayerNorm": Role.LAYER_NORM,
        "intermediate.dense": Role.FFN_IN,
        "output.dense": Role.FFN_OUT,
        "output.LayerNorm": Role.LAYER_NORM,
    },
    fixed_fields=("vocab_size", "max_position_embeddings", "type_vocab_size", "hidden_act"),
    norm_placement="post",
    block_output_norm="output.LayerNorm",
    # the pooler is grown, so a classifier reading its output grows from a classifier source's own
    head_roles={"classifier": Role.READOUT},
)
