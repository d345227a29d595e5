"""``python -m convert`` and the loader: round trips, dtypes, the hub path, and clear errors."""

import json
import shutil
import sys

import mlx.core as mx
import pytest
from hostile import within
from mlx.utils import tree_flatten
from oracle import hf_generate, pixel_values
from safetensors.numpy import load_file, save_file

import convert
from convert import main as convert_main
from mlx_mangaocr import ModelLoadError, load_mlx_processor
from mlx_mangaocr.loading.ocr import load_checkpoint
from testing.synthetic import IMAGES

CONVERTED_FILES = {
    "model.safetensors",
    "config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "preprocessor_config.json",
}


def _params(processor):
    return dict(tree_flatten(processor.model.parameters()))


@pytest.mark.parametrize("name", ["tiny", "tiny_tied_bin"])
def test_round_trip_both_weight_formats(name, request, tmp_path):
    built = request.getfixturevalue(name)
    out = convert.convert(str(built.folder), tmp_path / "mlx")
    assert {p.name for p in out.iterdir()} == CONVERTED_FILES
    _, metadata = mx.load(str(out / "model.safetensors"), return_metadata=True)
    assert metadata == {"format": "mlx"}
    config = json.loads((out / "config.json").read_text())
    assert config["mlx_mangaocr"]["dtype"] == "float32"
    assert config["num_beams"] == 4 and config["no_repeat_ngram_size"] == 3 and config["max_length"] == 300

    source, converted = load_mlx_processor(built.folder), load_mlx_processor(out)
    a, b = _params(source), _params(converted)
    assert a.keys() == b.keys()
    assert all(mx.array_equal(a[k], b[k]) for k in a)
    assert converted.generation_config == source.generation_config
    for path in IMAGES[:3]:
        theirs = hf_generate(built.oracle, pixel_values(built.folder, path))[0]
        assert converted.generate_ids([path])[0] == theirs
    # Converting the converted folder again changes nothing (sanitize is idempotent).
    again = convert.convert(str(out), tmp_path / "again")
    c = _params(load_mlx_processor(again))
    assert all(mx.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_conversion(tiny, tmp_path, dtype):
    out = convert.convert(str(tiny.folder), tmp_path / dtype, dtype=dtype)
    stored = mx.load(str(out / "model.safetensors"))
    assert {v.dtype for v in stored.values()} == {getattr(mx, dtype)}
    processor = load_mlx_processor(out)
    assert processor.config.dtype == dtype
    assert processor.model.encoder.layernorm.weight.dtype == getattr(mx, dtype)
    ids = processor.generate_ids([IMAGES[0]], num_beams=1, max_length=8)[0]
    assert ids[0] == 2 and 2 <= len(ids) <= 8
    # The loader can cast back up on request.
    assert load_checkpoint(out, dtype="float32").model.encoder.layernorm.weight.dtype == mx.float32


def test_refuses_to_overwrite_unless_forced(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert convert_main([str(tiny.folder), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert convert_main([str(tiny.folder), "-o", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert convert_main([str(tiny.folder), "-o", str(out), "--force"]) == 0


def test_default_output_is_the_user_model_cache(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_MANGAOCR_HOME", str(tmp_path / "home"))
    assert convert.default_output("kha-white/manga-ocr-base", "float32") == tmp_path / "home" / "manga-ocr-base"
    assert convert.default_output("kha-white/manga-ocr-base", "float16") == tmp_path / "home" / "manga-ocr-base-float16"
    out = convert.convert(str(tiny.folder))
    assert out == tmp_path / "home" / tiny.folder.name and (out / "model.safetensors").is_file()


def _copy(built, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(built.folder, folder)
    return folder


def _edit_config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_weights(folder, edit):
    weights = load_file(str(folder / "model.safetensors"))
    edit(weights)
    save_file(weights, str(folder / "model.safetensors"))


def _bad_cases():
    yield "missing folder", None, "model folder not found"
    yield "no config", lambda f: (f / "config.json").unlink(), "no config.json"
    yield (
        "another architecture",
        lambda f: _edit_config(f, lambda c: c.update(model_type="bert")),
        "expected a 'vision-encoder-decoder'",
    )
    yield (
        "encoder not ViT",
        lambda f: _edit_config(f, lambda c: c["encoder"].update(model_type="swin")),
        "only a ViT encoder",
    )
    yield (
        "decoder not BERT",
        lambda f: _edit_config(f, lambda c: c["decoder"].update(model_type="gpt2")),
        "only a BERT decoder",
    )
    yield "config not JSON", lambda f: (f / "config.json").write_text("{oops"), "cannot read"
    yield (
        "preprocessor config not JSON",
        lambda f: (f / "preprocessor_config.json").write_text("{oops"),
        "cannot read .*preprocessor_config.json",
    )
    yield "no vocab", lambda f: (f / "vocab.txt").unlink(), "no vocab.txt"
    yield "short vocab", lambda f: (f / "vocab.txt").write_text("[PAD]\n[UNK]\n"), "wrong vocab"
    yield "no weights", lambda f: (f / "model.safetensors").unlink(), "has no weights"
    yield "corrupt weights", lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 64), "corrupt"
    yield (
        "truncated weights",
        lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
        "corrupt",
    )
    yield (
        "missing tensor",
        lambda f: _edit_weights(f, lambda w: w.pop("decoder.bert.encoder.layer.1.crossattention.self.key.weight")),
        "missing tensor(s), e.g. decoder.bert.encoder.layer.1.crossattention.self.key.weight",
    )
    yield (
        "misshaped tensor",
        lambda f: _edit_weights(
            f, lambda w: w.update({"encoder.layernorm.weight": w["encoder.layernorm.weight"][:10]})
        ),
        "encoder.layernorm.weight: (10,) in the file, (64,) expected",
    )
    yield (
        "config of another size",
        lambda f: _edit_config(f, lambda c: c["encoder"].update(num_hidden_layers=3)),
        "missing tensor(s)",
    )
    # sizes are checked before anything is built: an absurd one is refused at once, not built for minutes
    yield (
        "ten million layers",
        lambda f: _edit_config(f, lambda c: c["encoder"].update(num_hidden_layers=10_000_000)),
        "describes a model of at least [0-9,]+ parameters, more than the [0-9,]+ bytes of weights",
    )
    yield (
        "negative hidden_size",
        lambda f: _edit_config(f, lambda c: c["decoder"].update(hidden_size=-64)),
        "decoder.hidden_size must be a whole number >= 1, got -64",
    )
    yield (
        "hidden_size as a string",
        lambda f: _edit_config(f, lambda c: c["encoder"].update(hidden_size="64")),
        "encoder.hidden_size must be a whole number >= 1, got '64'",
    )
    yield (
        "huge image_size",
        lambda f: _edit_config(f, lambda c: c["encoder"].update(image_size=10**12)),
        "resizes to 224x224, but the encoder's image_size is 1000000000000",
    )
    yield (
        "huge input size",
        lambda f: _edit_json(f / "preprocessor_config.json", lambda c: c.update(size=10**6)),
        "an input of 1000000x1000000 is over the",
    )
    yield (
        "quantization garbage",
        lambda f: _edit_config(f, lambda c: c.update(quantization={"bits": 5})),
        "quantization must be",
    )
    yield (
        "encoder and decoder of different widths",
        lambda f: _edit_config(f, lambda c: c["encoder"].update(hidden_size=32, num_attention_heads=2)),
        "encoder's hidden_size 32 differs from the decoder's 64",
    )
    yield (
        "a start token past the vocabulary",
        lambda f: _edit_config(f, lambda c: c.update(decoder_start_token_id=10**9)),
        "decoder_start_token_id must be a token id below vocab_size",
    )
    yield (
        "max_length past the decoder's positions",
        lambda f: _edit_config(f, lambda c: c.update(max_length=2000)),
        "max_length 2000 needs 1999 decoder positions",
    )
    yield "max_length as a float", lambda f: _edit_config(f, lambda c: c.update(max_length=1e12)), "max_length"
    yield "pad token as text", lambda f: _edit_config(f, lambda c: c.update(pad_token_id="x")), "pad_token_id"
    yield (
        "tie_word_embeddings as text",
        lambda f: _edit_config(f, lambda c: c["decoder"].update(tie_word_embeddings="false")),
        "tie_word_embeddings must be true or false",
    )
    yield (
        "an infinite layer_norm_eps",
        lambda f: _edit_config(f, lambda c: c["encoder"].update(layer_norm_eps=float("inf"))),
        "layer_norm_eps must be a finite number",
    )
    for key, value, message in [("resample", 99, "resample must be one of Pillow's filters"),
                                ("rescale_factor", "x", "rescale_factor must be a finite number"),
                                ("image_mean", "abc", "image_mean must be three finite numbers"),
                                ("image_std", [0, 0, 0], "image_std must be three finite numbers > 0")]:  # fmt: skip
        yield (
            f"preprocessor {key} {value!r}",
            lambda f, key=key, value=value: _edit_json(
                f / "preprocessor_config.json", lambda c: c.update({key: value})
            ),
            message,
        )
    yield (
        "a shard outside the folder",
        lambda f: (f / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"encoder.layernorm.weight": "../model.safetensors"}})
        ),
        "names a weights file outside the model folder: '../model.safetensors'",
    )


@pytest.mark.parametrize("name,damage,message", list(_bad_cases()), ids=lambda x: x if isinstance(x, str) else "")
def test_bad_checkpoints_get_clear_errors(tiny, tmp_path, name, damage, message):
    folder = tmp_path / "does-not-exist" if damage is None else _copy(tiny, tmp_path)
    if damage is not None:
        damage(folder)
    with within(120), pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_mlx_processor(folder)
    assert convert_main([str(folder), "-o", str(tmp_path / "out")]) == 1


def test_sharded_weights_load_and_the_sizes_count_every_parameter(tiny, full, tmp_path):
    folder = _copy(tiny, tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, str(folder / shard))
    (folder / "model.safetensors").unlink()
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    sharded, whole = load_checkpoint(folder), load_checkpoint(tiny.folder)
    for (name, a), (_, b) in zip(tree_flatten(sharded.model.parameters()), tree_flatten(whole.model.parameters()),
                                 strict=True):  # fmt: skip
        assert mx.array_equal(a, b), name
    # the count a config implies, which is checked against the weights before building, is exact
    for checkpoint in (whole, load_checkpoint(full.folder)):
        assert checkpoint.config.parameter_count() == sum(
            v.size for _, v in tree_flatten(checkpoint.model.parameters())
        )


def test_bin_without_torch_says_what_to_install(tiny_tied_bin, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ModelLoadError, match="needs PyTorch to read: pip install torch"):
        load_mlx_processor(tiny_tied_bin.folder)


def _fake_hub_cache(cache, repo_id, source):
    """Lay ``source`` out as huggingface-hub caches a download of ``repo_id``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(source, repo / "snapshots" / commit)
    return repo / "snapshots" / commit


@pytest.mark.parametrize("name", ["tiny", "tiny_tied_bin"])
def test_hub_id_resolves_through_huggingface_hub(name, request, tmp_path, monkeypatch):
    """The real hub code path, served from a prepared cache with the hub unreachable (offline)."""
    import huggingface_hub.constants as hub

    built = request.getfixturevalue(name)
    snapshot = _fake_hub_cache(tmp_path / "hub", "someone/manga-ocr-test", built.folder)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    processor = load_mlx_processor("someone/manga-ocr-test")
    assert processor.checkpoint.source == snapshot
    assert processor.generate_ids([IMAGES[0]])[0] == hf_generate(built.oracle, pixel_values(built.folder, IMAGES[0]))[0]
    out = convert.convert("someone/manga-ocr-test", tmp_path / "converted")
    assert (out / "model.safetensors").is_file()
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"):
        load_mlx_processor("someone/not-downloaded")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_falls_back_to_the_cache_at_once(tiny, tmp_path, monkeypatch):
    """Online mode, but the hub refuses connections: one probe, then the cached snapshot is used."""
    import time

    import huggingface_hub.constants as hub

    snapshot = _fake_hub_cache(tmp_path / "hub", "someone/manga-ocr-test", tiny.folder)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    assert load_checkpoint("someone/manga-ocr-test").source == snapshot
    with pytest.raises(ModelLoadError, match=r"offline \(the hub at http://127.0.0.1:\d+ cannot be reached\)"):
        load_checkpoint("someone/not-downloaded")
    assert time.monotonic() - start < 20  # a sanity bound: huggingface_hub's own retries take 24 s per file


@pytest.mark.parametrize("how", ["refused", "HF_HUB_OFFLINE"])
def test_first_use_offline_answers_in_seconds_with_one_message(tmp_path, how):
    """A new user offline with no model: the command fails at once with one message and no retry noise."""
    import os
    import subprocess
    import time

    env = dict(os.environ, MLX_MANGAOCR_HOME=str(tmp_path / "models"), HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_OFFLINE", None)
    if how == "refused":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    else:
        env["HF_HUB_OFFLINE"] = "1"
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "mlx_mangaocr", str(IMAGES[0])], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - start
    assert run.returncode == 2, run.stderr
    assert "Retry" not in run.stderr
    assert run.stderr.count("error:") == 1
    assert "run `mlx-mangaocr-convert kha-white/manga-ocr-base`" in run.stderr
    assert ("cannot be reached" if how == "refused" else "HF_HUB_OFFLINE is set") in run.stderr
    assert elapsed < 20, elapsed  # a generous sanity bound (the retries alone took 24 s)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_conversion_round_trip(tiny, tmp_path, bits):
    import mlx.nn as nn

    out = tmp_path / f"q{bits}"
    assert convert_main([str(tiny.folder), "-o", str(out), "-q", "--q-bits", str(bits), "--q-group-size", "64"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {"group_size": 64, "bits": bits}
    stored = mx.load(str(out / "model.safetensors"))
    assert "decoder.bert.encoder.layer.0.intermediate.dense.scales" in stored
    assert stored["decoder.bert.encoder.layer.0.intermediate.dense.weight"].dtype == mx.uint32
    full = convert.convert(str(tiny.folder), tmp_path / "fp32")
    assert (out / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size

    loaded = load_mlx_processor(out)  # the loader rebuilds the quantized layers from config.json
    model = loaded.model
    assert isinstance(model.decoder.bert.encoder.layer[0].intermediate.dense, nn.QuantizedLinear)
    assert isinstance(model.encoder.encoder.layer[0].attention.attention.query, nn.QuantizedLinear)
    assert isinstance(model.decoder.bert.embeddings.word_embeddings, nn.QuantizedEmbedding)
    assert not isinstance(model.decoder.bert.embeddings.token_type_embeddings, nn.QuantizedEmbedding)
    # Quantizing on load gives the very same weights as loading the quantized folder.
    on_load = load_mlx_processor(tiny.folder, quantize={"bits": bits, "group_size": 64})
    a, b = _params(loaded), _params(on_load)
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]) for k in a)
    ids = loaded.generate_ids([IMAGES[0]], num_beams=1, max_length=12)[0]
    assert ids[0] == 2 and len(ids) <= 12
    with pytest.raises(ValueError, match="already quantized"):
        load_mlx_processor(out, quantize={"bits": 2, "group_size": 32})


def test_quantization_settings_are_checked(tiny, tmp_path):
    with pytest.raises(ValueError, match="bits in"):
        load_mlx_processor(tiny.folder, quantize={"bits": 5, "group_size": 64})
    with pytest.raises(SystemExit):
        convert_main([str(tiny.folder), "-o", str(tmp_path / "x"), "-q", "--q-bits", "5"])
