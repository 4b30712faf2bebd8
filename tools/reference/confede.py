"""Golden for ConFEDE's fusion model against XpastaX/ConFEDE@c048fad (--code: the checkout's `MOSI/` folder).

    git --git-dir=<bare clone> archive c048fad | tar -x -C confede
    python tools/reference/confede.py --code confede/MOSI

`model/net/constrastive/TVA_fusion.py` in config.py's MOSI configuration (2-layer encoders, 8
heads, feed-forward = encoder width, const_heat 0.5) at encoder width 32 with a tiny BERT, in
its fusion setting (`set_train()`: BERT frozen): 2 anchors and their 6 partners each (ss, ss,
dd, dd, sd, sd), fixed in the golden instead of drawn by the retriever. Eval: forward(sample1,
None); train: forward(sample1, sample2) with dropout 0 and TVA_fusion's loss. The stage-1 heads
(Text/Vision/AudioPretrain classifiers) are built too, so that every msabench tensor is mapped.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from _golden import (
    TINY_BERT,
    grads,
    import_reference,
    padded,
    parse_args,
    perturb_,
    record_hooks,
    save_golden,
    tiny_bert_dir,
    zero_dropout_,
)
from _patch import patched_class
from torch import nn

D = 32  # encoder_fea_dim (MOSI: 768); projections D / 2
DIMS = (TINY_BERT["hidden_size"], 5, 20)
T_A, T_V = 14, 12  # patched num_patches (the code: 375 / 500, the exact sequence lengths it requires)
LENGTHS = {"a": [14, 9, 12, 5, 11, 14, 3, 8, 14, 6, 10, 7, 13, 4], "v": [12, 12, 7, 3, 9, 10, 5, 12, 8, 2, 11, 6, 4, 12]}
WORDS = [6, 3, 9, 5, 8, 2, 7, 4, 9, 3, 6, 5, 8, 2]  # words per sample (tokenised with [CLS] / [SEP])
N_ANCHORS = 2


def configure(config, tmp: str) -> list[str]:
    ds = config.MOSI.downStream
    ds.encoder_fea_dim, ds.text_fea_dim = D, TINY_BERT["hidden_size"]
    config.DEVICE, config.MOSI.path.model_path = torch.device("cpu"), tmp + "/"
    return [(f"config.py MOSI.downStream.encoder_fea_dim = {D}, text_fea_dim = {ds.text_fea_dim} (tiny BERT);"
            " DEVICE cpu; model_path a temporary folder (config.py creates log/, ckpt/, result/ in a temporary cwd)")]


def build(code: Path, bert: str):
    """TVA_fusion and the three stage-1 heads, the code's sequence lengths patched to the golden's."""
    import transformers

    config = import_reference(code, "config")
    text = import_reference(code, "model.net.constrastive.text_encoder_finetune", stub_packages=("model",))
    for name in ("BertTokenizer", "BertModel"):
        real = getattr(transformers, name)
        setattr(text, name, type(name, (), {"from_pretrained": staticmethod(lambda *_a, _r=real, **_k: _r.from_pretrained(bert))}))
    notes = configure(config, tempfile.mkdtemp(prefix="confede_"))
    for mod_name, t in (("vision_encoder_finetune", T_V), ("audio_encoder_fintune", T_A)):
        mod = import_reference(code, f"model.net.constrastive.{mod_name}")
        old = "num_patches = 500" if "vision" in mod_name else "num_patches = 375"
        mod.PositionEncodingTraining, n = patched_class(mod, "PositionEncodingTraining", [(old, f"num_patches = {t}", 1)])
        notes += n
    fusion = import_reference(code, "model.net.constrastive.TVA_fusion")
    metrics = import_reference(code, "util.metrics", stub_packages=("util",))
    fusion.cont_NTXentLoss, n = patched_class(metrics, "cont_NTXentLoss", [  # written for pytorch-metric-learning 1.x
        ("def compute_loss(self, embeddings, labels, indices_tuple):",
         "def compute_loss(self, embeddings, labels, indices_tuple, ref_emb=None, ref_labels=None):", 1),
        ("return self.loss_method(mat, labels, indices_tuple)", "return self.loss_method(mat, indices_tuple)", 1)])
    notes += n
    model = fusion.TVA_fusion(config=config)
    heads = nn.ModuleDict({
        "t": text.TextPretrain(proj_fea_dim=TINY_BERT["hidden_size"], config=config).classifier,
        "v": import_reference(code, "model.net.constrastive.vision_encoder_finetune").VisionPretrain(config=config).classifier,
        "a": import_reference(code, "model.net.constrastive.audio_encoder_fintune").AudioPretrain(config=config).classifier,
    })
    return model, heads, notes


def samples(code: Path, gen: torch.Generator, bert: str) -> list[dict]:
    """Anchors then partners as the code's loader gives them (padding masks by MOSI.py's own
    `__gen_mask`), and the same samples as msabench `Batch` fields."""
    from transformers import BertTokenizer

    mosi = import_reference(code, "dataloader.MOSI", stub_packages=("dataloader",))
    n = len(WORDS)
    raw = [" ".join(f"w{int(i)}" for i in torch.randint(0, TINY_BERT["vocab_size"] - 5, (k,), generator=gen)) for k in WORDS]
    audio, vision = padded(gen, LENGTHS["a"], DIMS[1]), padded(gen, LENGTHS["v"], DIMS[2])
    labels = torch.randn(n, generator=gen).clamp(-3, 3)
    ds = object.__new__(mosi.MOSIDataset)
    ds.data, ds.size = {"vision": vision.numpy(), "audio": audio.numpy()}, n
    ds._MOSIDataset__gen_mask()
    tok = BertTokenizer.from_pretrained(bert)
    out = []
    for rows in (slice(0, N_ANCHORS), slice(N_ANCHORS, n)):
        enc = tok(raw[rows], padding=True, truncation=True, max_length=256, return_tensors="pt")  # as TextEncoder
        out.append({
            "code": {"raw_text": raw[rows], "vision": vision[rows], "audio": audio[rows], "regression_labels": labels[rows],
                     "vision_padding_mask": ds.data["vision_padding_mask"][rows], "audio_padding_mask": ds.data["audio_padding_mask"][rows]},
            "batch": {"text_ids": enc["input_ids"], "text_mask": enc["attention_mask"], "text_segment": enc["token_type_ids"],
                      "audio": audio[rows], "vision": vision[rows], "audio_lengths": torch.tensor(LENGTHS["a"][rows]),
                      "vision_lengths": torch.tensor(LENGTHS["v"][rows]), "labels": labels[rows],
                      "index": torch.arange(n)[rows]},
        })
    return out


HOOKS = {f"{kind}_{m}": f"{m.upper()}_{kind}_proj" for kind in ("simi", "dissimi") for m in "tva"}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    code = args.code.resolve()
    os.chdir(tempfile.mkdtemp(prefix="confede_cwd_"))  # config.py / TVA_fusion create folders in the cwd
    bert = str(tiny_bert_dir())
    torch.manual_seed(args.seed)
    model, heads, notes = build(code, bert)
    zeroed = zero_dropout_(model) + zero_dropout_(heads)
    gen = torch.Generator().manual_seed(args.seed)
    perturb_(model, gen)
    perturb_(heads, gen)
    anchors, partners = samples(code, gen, bert)
    hooked = record_hooks(model, HOOKS)
    model.eval()
    with torch.no_grad():
        pred, (t, v, a), *_ = model(anchors["code"], None)
        evals = {"pred": pred, "text": t, "vision": v, "audio": a, **hooked}
    model.train()
    mono = record_hooks(model, {"mono": "mono_decoder"})
    pred, _, total, task, con = model(anchors["code"], partners["code"])
    y1, y2 = anchors["code"]["regression_labels"], partners["code"]["regression_labels"]
    mono_loss = nn.MSELoss()(mono["mono"].squeeze(), torch.cat([y1] * 6 + [y2] * 6))  # as TVA_fusion's mono_task_loss
    total.backward()
    weights = {**model.state_dict(), **{f"pretrain_{m}.{k}": w for m, h in heads.items() for k, w in h.state_dict().items()}}
    save_golden(args, "confede", {
        "weights": weights, "batch": anchors["batch"], "eval": evals,
        "loss": {"pred": task, "contrastive": con, "mono": mono_loss, "total": total}, "grad": grads(model),
        "state": {f"partner.{k}": x for k, x in partners["batch"].items()},
    }, {
        "model": "confede", "reference": "XpastaX/ConFEDE@c048fad MOSI/model/net/constrastive/TVA_fusion.py (fusion)",
        "repository": "https://github.com/XpastaX/ConFEDE", "commit": "c048fadc0b459f10f0ea538014e71b95da61c2b4",
        "patches": [
            "package __init__ of model, dataloader, util not run",
            "TextEncoder's BertTokenizer/BertModel.from_pretrained('bert-base-uncased') read a temporary tiny BERT",
            *notes,
            "partners fixed: 6 per anchor (ss, ss, dd, dd, sd, sd) given as sample2 instead of drawn by the retriever",
            "the mono loss is recomputed from mono_decoder's output as TVA_fusion computes it (it is not returned)",
            f"dropout set to 0 after building: every nn.Dropout module, and the floats {zeroed}",
        ],
        "bert_config": TINY_BERT,
        "msabench": {"name": "confede", "dataset": "mosi", "preset": "official", "stage": "fusion", "overrides": {
            "dims": DIMS, "text_encoder": "tiny", "encoder_dim": D, "audio_seq_len": T_A, "vision_seq_len": T_V,
            "encoder_dropout": 0.0, "pos_dropout": 0.0, "proj_dropout": 0.0}},
    }, model=model)


if __name__ == "__main__":
    main()
