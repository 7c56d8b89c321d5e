"""Loading pre-trained encoders."""

import torch

from lightning_modules.glue_module import GlueModule
from lottery.models import load_classifier, tiny_bert


def test_a_half_precision_checkpoint_loads_as_float32(tmp_path):
    # transformers 5 keeps a checkpoint's dtype by default; fine-tuning half-precision weights
    # would silently change the recipe, so load_classifier upcasts.
    model = tiny_bert(num_labels=2, seed=0)
    model.half().save_pretrained(tmp_path)
    loaded = load_classifier(tmp_path, num_labels=2)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    expected = model.bert.encoder.layer[0].attention.self.query.weight.float()
    assert torch.equal(loaded.bert.encoder.layer[0].attention.self.query.weight, expected)


def test_fine_tuning_starts_in_train_mode_and_search_in_eval_mode():
    # Hugging Face models load in eval mode and Lightning keeps a module's mode.
    from lightning_modules.importance_module import ImportanceModule
    from lottery.importance import get_criterion
    from lottery.masks import StructuredMasks

    fine_tune = GlueModule(tiny_bert(num_labels=2, seed=0), "rte")
    model = tiny_bert(num_labels=2, seed=0)
    search = ImportanceModule(model, "rte", StructuredMasks.for_model(model), get_criterion("michel"))
    for module, training in ((fine_tune, True), (search, False)):
        module.model.train(not training)
        module.on_fit_start()
        assert module.model.training is training
        assert all(m.training is training for m in module.model.modules())
