"""The description of an experiment, shared by the federation (``fedgrow_hf.federated``), the comparison
(``fedgrow_hf.reproduce``), the recipe and the CLI:

* ``config``: the experiment config (``FederationConfig``), its schema and checks;
* ``models``: a config's model (a classifier or a causal LM), the grown model, the target's and a source's config;
* ``tasks``: what a model is trained for (classify, or model language) and how ``Trainer`` batches and scores it;
* ``targets``: target shapes by name, and a shape or target config from what a user typed;
* ``data``: a party's data share, its held-out share and the common test set; ``recipe_data``: the recipe's;
* ``parties``: a party's private source and its Dual-LiGO model, and the shapes its updates have;
* ``training``: a party's ``TrainingArguments`` and where a run keeps its final model;
* ``stream`` and ``curves``: the batches a training in pieces trains on, and where it is evaluated.
"""
