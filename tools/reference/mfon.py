"""Golden for MFON against 123sprouting/MFON@fd44467 (--code: the checkout's `MOSI/` folder).

    git --git-dir=<bare clone> archive fd44467 | tar -x -C mfon
    python tools/reference/mfon.py --code mfon/MOSI

The fusion stage: `models/model.py` TVA_fusion in the MOSI configuration (config.py
downStream: vision/text 2 layers, audio/text 5 layers, 8 heads, causal mask, FFN width D,
teachers 4/3 layers) at D = the tiny BERT width and short prompts (one row per padded frame);
the teachers frozen with their own `set_froze`, as after `load_froze`. Eval: forward(mode=
'test'); train: forward(mode='train') and TVA_train.py's loss, dropout 0. The stage-1 heads
(VisionPretrain / AudioPretrain classifiers) are built too and evaluated on the teachers'
outputs, as in the pre-training stages.
"""

from __future__ import annotations

import tempfile
from types import SimpleNamespace

import torch
from _golden import (
    TINY_BERT,
    grads,
    import_reference,
    padded,
    parse_args,
    perturb_,
    save_golden,
    tiny_bert_dir,
    token_batch,
    zero_dropout_,
)

D = TINY_BERT["hidden_size"]  # encoder_fea_dim = text_fea_dim = the BERT width
DIMS = (D, 5, 20)
WIDTH = 12  # BertTokenizer(padding=True): padded to the longest text of the batch
LENGTHS = {"t": [12, 7, 9, 4, 11, 6], "a": [14, 9, 12, 5, 11, 14], "v": [12, 12, 7, 3, 9, 10]}
T_A, T_V = 14, 12  # prompt rows = padded frames (config alen/vlen; 375/500 on MOSI)
DELTA_VA, DELTA_NCE = 0.5, 0.5  # TVAtrain.delta_va, delta_nce


def reference_config() -> SimpleNamespace:
    """config.py's MOSI class tree at tiny widths; dropouts 0 (the train-mode pass)."""
    down = SimpleNamespace(
        language="en", encoder_fea_dim=D, text_fea_dim=D, vision_fea_dim=DIMS[2], vision_seq_len=T_V,
        audio_fea_dim=DIMS[1], audio_seq_len=T_A, vision_drop_out=0.0, audio_drop_out=0.0, vision_nhead=8,
        audio_nhead=8, vision_tf_num_layers=4, audio_tf_num_layers=3, vision_attn_mask=False, audio_attn_mask=False,
        audio_text_nhead=8, vision_text_nhead=8, vision_text_tf_num_layers=2, audio_text_tf_num_layers=5,
        drop_out=0.0, text_drop_out=0.0, attn_mask=True, alen=T_A, vlen=T_V,
    )
    tmp = tempfile.mkdtemp(prefix="mfon_")
    path = SimpleNamespace(model_path=tmp + "/", encoder_path=tmp + "/")
    return SimpleNamespace(MOSI=SimpleNamespace(downStream=down, path=path), DEVICE=torch.device("cpu"), seed=0)


class FixedTokenizer:
    """Stands in for BertTokenizer: returns the golden's token ids for the batch's raw text."""

    def __init__(self, tokens: dict[str, torch.Tensor]):
        self.tokens = tokens

    def __call__(self, _text, **_kwargs):
        from transformers import BatchEncoding

        return BatchEncoding({"input_ids": self.tokens["text_ids"], "token_type_ids": self.tokens["text_segment"],
                              "attention_mask": self.tokens["text_mask"]})


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    bert_dir = str(tiny_bert_dir())
    import_reference(args.code, "models.classifier", stub_packages=("models",))
    text_module = import_reference(args.code / "models", "Text_encoder")  # model.py imports it top-level
    import transformers

    text_module.BertModel = type("TinyBert", (), {"from_pretrained": staticmethod(
        lambda *_a, **_k: transformers.BertModel.from_pretrained(bert_dir))})
    text_module.BertTokenizer = type("TinyTok", (), {"from_pretrained": staticmethod(
        lambda *_a, **_k: transformers.BertTokenizer.from_pretrained(bert_dir))})
    model_module = import_reference(args.code, "models.model")
    vision_module = import_reference(args.code, "Vision_encoder")
    audio_module = import_reference(args.code, "Audio_encoder")
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    config = reference_config()
    model = model_module.TVA_fusion(config)
    heads = {"v": vision_module.VisionPretrain(config).classifier, "a": audio_module.AudioPretrain(config).classifier}
    zeroed = zero_dropout_(model)
    for m in (model, *heads.values()):
        perturb_(m, gen)
    model.vision_encoder_froze.set_froze()  # as load_froze leaves them
    model.audio_encoder_froze.set_froze()
    tokens = token_batch(gen, LENGTHS["t"], WIDTH, TINY_BERT["vocab_size"])
    model.text_encoder.tokenizer = FixedTokenizer(tokens)
    batch = {
        **tokens, "audio": padded(gen, LENGTHS["a"], DIMS[1]), "vision": padded(gen, LENGTHS["v"], DIMS[2]),
        "audio_lengths": torch.tensor(LENGTHS["a"]), "vision_lengths": torch.tensor(LENGTHS["v"]),
        "labels": torch.randn(6, generator=gen).clamp(-3, 3), "index": torch.arange(6),
    }
    raw_text = ["(raw text: replaced by the golden's token ids)"] * 6
    model.eval()
    with torch.no_grad():
        pred, (x_t, x_v, x_a) = model(raw_text, batch["vision"], batch["audio"], mode="test")
        teacher = {"v": model.vision_encoder_froze(batch["vision"]), "a": model.audio_encoder_froze(batch["audio"])}
        evals = {"pred": pred, "x_t": x_t, "x_v": x_v, "x_a": x_a, **{f"teacher_{m}": t for m, t in teacher.items()},
                 **{f"pretrain_pred_{m}": heads[m](teacher[m]) for m in "va"}}  # Vtrain / Atrain predictions
    model.train()
    pred, (loss_v, loss_a, loss_nce) = model(raw_text, batch["vision"], batch["audio"], mode="train")
    mse = torch.mean((pred - batch["labels"]) * (pred - batch["labels"]))  # TVA_train.py
    total = mse + DELTA_VA * (loss_v + loss_a) + DELTA_NCE * loss_nce
    total.backward()
    weights = {**model.state_dict(), **{f"pretrain_{m}.{k}": v for m, h in heads.items() for k, v in h.state_dict().items()}}
    save_golden(args, "mfon", {
        "weights": weights, "batch": batch, "eval": evals,
        "loss": {"mse": mse, "kl_v": loss_v, "kl_a": loss_a, "nce": loss_nce, "total": total}, "grad": grads(model),
    }, {
        "model": "mfon", "reference": "123sprouting/MFON@fd44467 MOSI/models/ (fusion loss: train/TVA_train.py)",
        "repository": "https://github.com/123sprouting/MFON", "commit": "fd444677414ab7496dc91ed30245cf25069bcdd9",
        "patches": [
            "package __init__ of models not run",
            "Text_encoder's BertModel/BertTokenizer.from_pretrained('bert-base-uncased') read a temporary tiny BERT",
            "the tokenizer call returns the golden's token ids (the raw sentences are not stored)",
            "config: a stand-in for config.py's MOSI class tree (tiny widths, prompt rows = padded frames)",
            f"dropout set to 0 after building: every nn.Dropout module, and the floats {zeroed}",
        ],
        "bert_config": TINY_BERT,
        "msabench": {"name": "mfon", "dataset": "mosi", "preset": "official", "stage": "fusion", "overrides": {
            "dims": DIMS, "encoder_dim": D, "audio_seq_len": T_A, "vision_seq_len": T_V, "text_dropout": 0.0,
            "cross_dropout": 0.0, "vision_teacher_dropout": 0.0, "audio_teacher_dropout": 0.0}},
    }, model=model)


if __name__ == "__main__":
    main()
