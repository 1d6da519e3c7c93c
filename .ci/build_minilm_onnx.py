#!/usr/bin/env python3
"""Builds all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384) as an ONNX graph from its safetensors
weights with onnx.helper, then verifies it. Called by .ci/setup-models.sh.

  build_minilm_onnx.py build  SRC_DIR OUT_DIR   # SRC_DIR: model.safetensors, config.json, tokenizer.json
  build_minilm_onnx.py verify OUT_DIR SRC_DIR   # NumPy reference vs onnxruntime + a similarity check

The graph: opset 17, LayerNormalization, erf GELU; inputs input_ids, attention_mask,
token_type_ids (int64 [batch, seq]); output last_hidden_state (float32 [batch, seq, 384]).
Padding is masked with an additive -10000 bias on the attention scores, as BERT does.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

MASK_BIAS = -10000.0


def load_weights(src: Path):
    w = load_file(str(src / "model.safetensors"))
    # Some exports prefix every tensor with "bert."; strip it so one naming scheme works.
    return {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in w.items()}


def load_config(src: Path):
    cfg = json.loads((src / "config.json").read_text())
    assert cfg.get("model_type", "bert") == "bert", cfg.get("model_type")
    assert cfg.get("hidden_act", "gelu") == "gelu", cfg.get("hidden_act")
    assert cfg.get("position_embedding_type", "absolute") == "absolute"
    return cfg


# ---------------------------------------------------------------------------------------------
# ONNX graph
# ---------------------------------------------------------------------------------------------
def build(src: Path, out: Path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = load_config(src)
    w = load_weights(src)
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    n_layers = cfg["num_hidden_layers"]

    nodes, inits = [], []
    counter = [0]

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, inputs, **attrs):
        counter[0] += 1
        name = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def const(name, arr):
        return init(name, np.asarray(arr))

    def linear(x, prefix):
        wt = init(prefix + ".weight_t", w[prefix + ".weight"].astype(np.float32).T)  # [in, out]
        b = init(prefix + ".bias", w[prefix + ".bias"].astype(np.float32))
        return node("Add", [node("MatMul", [x, wt]), b])

    def layer_norm(x, prefix):
        g = init(prefix + ".weight", w[prefix + ".weight"].astype(np.float32))
        b = init(prefix + ".bias", w[prefix + ".bias"].astype(np.float32))
        return node("LayerNormalization", [x, g, b], axis=-1, epsilon=eps)

    # Embeddings: word + position + token type, then LayerNorm.
    word = node("Gather", [init("embeddings.word_embeddings.weight",
                                w["embeddings.word_embeddings.weight"].astype(np.float32)), "input_ids"])
    # Position embeddings: the first seq_len rows of the table (Slice, not Range + Gather, which
    # ONNX Runtime's optimizer mis-fuses when the index is a scalar).
    seq_len = node("Shape", ["input_ids"], start=1, end=2)  # 1-D [seq_len]
    pos = node("Slice", [init("embeddings.position_embeddings.weight",
                              w["embeddings.position_embeddings.weight"].astype(np.float32)),
                         const("c_zero_1d", np.array([0], dtype=np.int64)), seq_len,
                         const("c_axis0_1d", np.array([0], dtype=np.int64))])
    typ = node("Gather", [init("embeddings.token_type_embeddings.weight",
                               w["embeddings.token_type_embeddings.weight"].astype(np.float32)), "token_type_ids"])
    x = layer_norm(node("Add", [node("Add", [word, pos]), typ]), "embeddings.LayerNorm")

    # Additive attention bias: (1 - mask) * -10000, shaped [batch, 1, 1, seq].
    mask_f = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inv = node("Sub", [const("c_one_f", np.array(1.0, dtype=np.float32)), mask_f])
    bias = node("Mul", [inv, const("c_mask_bias", np.array(MASK_BIAS, dtype=np.float32))])
    bias = node("Unsqueeze", [bias, const("c_axes_12", np.array([1, 2], dtype=np.int64))])

    heads_shape = const("c_heads_shape", np.array([0, 0, nh, hd], dtype=np.int64))
    merge_shape = const("c_merge_shape", np.array([0, 0, H], dtype=np.int64))
    scale = const("c_scale", np.array(1.0 / math.sqrt(hd), dtype=np.float32))
    sqrt2 = const("c_sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = const("c_half", np.array(0.5, dtype=np.float32))
    one = "c_one_f"

    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        q = node("Transpose", [node("Reshape", [linear(x, p + ".attention.self.query"), heads_shape])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(x, p + ".attention.self.key"), heads_shape])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, p + ".attention.self.value"), heads_shape])], perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        probs = node("Softmax", [scores], axis=-1)
        ctx = node("Reshape", [node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_shape])
        attn = linear(ctx, p + ".attention.output.dense")
        x = layer_norm(node("Add", [attn, x]), p + ".attention.output.LayerNorm")
        h = linear(x, p + ".intermediate.dense")
        # GELU (exact): 0.5 * h * (1 + erf(h / sqrt(2)))
        gelu = node("Mul", [node("Mul", [h, half]), node("Add", [node("Erf", [node("Div", [h, sqrt2])]), one])])
        o = linear(gelu, p + ".output.dense")
        x = layer_norm(node("Add", [o, x]), p + ".output.LayerNorm")

    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output_identity"))

    dims = ["batch_size", "sequence_length"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims)
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [H])]
    graph = helper.make_graph(nodes, "all-MiniLM-L6-v2", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="anchorbot-setup-models")
    model.ir_version = 8  # the IR version of opset 17: loadable by any ONNX Runtime >= 1.13
    onnx.checker.check_model(model)

    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out / "model.onnx"))
    print(f"built {out / 'model.onnx'} ({len(nodes)} nodes, {len(inits)} initializers)")


# ---------------------------------------------------------------------------------------------
# NumPy reference and verification
# ---------------------------------------------------------------------------------------------
def reference_forward(w, cfg, ids, mask, types):
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    f = lambda k: w[k].astype(np.float32)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * f(p + ".weight") + f(p + ".bias")

    def lin(x, p):
        return x @ f(p + ".weight").T + f(p + ".bias")

    def erf(x):  # vectorised math.erf, exact enough for a reference
        return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(np.float32)

    B, S = ids.shape
    x = f("embeddings.word_embeddings.weight")[ids] + f("embeddings.position_embeddings.weight")[np.arange(S)][None] \
        + f("embeddings.token_type_embeddings.weight")[types]
    x = ln(x, "embeddings.LayerNorm")
    bias = ((1.0 - mask.astype(np.float32)) * MASK_BIAS)[:, None, None, :]
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        split = lambda t: t.reshape(B, S, nh, hd).transpose(0, 2, 1, 3)
        q = split(lin(x, p + ".attention.self.query"))
        k = split(lin(x, p + ".attention.self.key"))
        v = split(lin(x, p + ".attention.self.value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(hd)) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
        x = ln(lin(ctx, p + ".attention.output.dense") + x, p + ".attention.output.LayerNorm")
        h = lin(x, p + ".intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / np.float32(math.sqrt(2.0))))
        x = ln(lin(h, p + ".output.dense") + x, p + ".output.LayerNorm")
    return x.astype(np.float32)


def encode(tok, sentences):
    encs = tok.encode_batch(sentences)
    S = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), S), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, e in enumerate(encs):
        n = len(e.ids)
        ids[i, :n], mask[i, :n], types[i, :n] = e.ids, e.attention_mask, e.type_ids
    return ids, mask, types


def mean_pool(h, mask):
    m = mask[..., None].astype(np.float32)
    v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def verify(out: Path, src: Path):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    cfg = load_config(out)
    w = load_weights(src)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = sorted(i.name for i in sess.get_inputs())
    assert names == ["attention_mask", "input_ids", "token_type_ids"], names
    assert [o.name for o in sess.get_outputs()] == ["last_hidden_state"]

    def run(ids, mask, types):
        return sess.run(["last_hidden_state"],
                        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]

    # 1. ONNX vs NumPy reference on a padded batch (exercises the mask and dynamic dims).
    sentences = ["a cat", "The quick brown fox jumps over the lazy dog near the riverbank.",
                 "a feline", "quarterly revenue"]
    ids, mask, types = encode(tok, sentences)
    got = run(ids, mask, types)
    want = reference_forward(w, cfg, ids, mask, types)
    assert got.shape == (len(sentences), ids.shape[1], cfg["hidden_size"]) and got.dtype == np.float32, got.shape
    diff = float(np.abs(got - want).max())
    print(f"verify: onnxruntime {ort.__version__} vs NumPy reference, batch {ids.shape}: max abs diff {diff:.2e}")
    if not diff < 1e-4:
        sys.exit(f"FAIL: max abs diff {diff} >= 1e-4")

    # 2. Padding must not change a sentence's valid positions (mask really applied).
    solo_ids, solo_mask, solo_types = encode(tok, ["a cat"])
    solo = run(solo_ids, solo_mask, solo_types)
    n = solo.shape[1]
    pad_diff = float(np.abs(solo[0] - got[0, :n]).max())
    print(f"verify: padded vs unpadded 'a cat': max abs diff {pad_diff:.2e}")
    if not pad_diff < 1e-4:
        sys.exit(f"FAIL: padding leaks into attention (diff {pad_diff})")

    # 3. Semantics: mean-pooled cosine similarities.
    e = mean_pool(got, mask)
    cat_feline = float(e[0] @ e[2])
    cat_revenue = float(e[0] @ e[3])
    print(f"verify: cos(a cat, a feline) = {cat_feline:.4f}; cos(a cat, quarterly revenue) = {cat_revenue:.4f}")
    if not cat_feline > cat_revenue:
        sys.exit("FAIL: 'a cat' is not closer to 'a feline' than to 'quarterly revenue'")
    print("verify: OK")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("build", "verify"):
        sys.exit(__doc__)
    cmd, a, b = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    build(a, b) if cmd == "build" else verify(a, b)
