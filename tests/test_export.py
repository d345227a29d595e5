"""``mlx-mangaocr export``: an MLX model folder back to the Hugging Face layout, loaded by transformers
with no missing or unexpected keys, by upstream manga-ocr with the same text, and converted back to
the same weights, bit for bit."""

import json

import manga_ocr
import mlx.core as mx
import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import VisionEncoderDecoderModel

import mlx_mangaocr
from mlx_mangaocr import ModelLoadError
from mlx_mangaocr.frontends.cli import main
from mlx_mangaocr.frontends.convert import convert
from mlx_mangaocr.loading import export as export_module
from mlx_mangaocr.loading.export import HF_FILES, export_hf
from testing.synthetic import (
    GENERATION,
    IMAGES,
    SPECIAL_TOKENS_MAP,
    TOKENIZER_CONFIG,
    Spec,
    legacy_state_dict,
    vocab_tokens,
)

HEAD_BIAS, HEAD_DECODER_BIAS = "decoder.cls.predictions.bias", "decoder.cls.predictions.decoder.bias"
PATCH_CONV = "encoder.embeddings.patch_embeddings.projection.weight"
POOLER = {"encoder.pooler.dense.weight", "encoder.pooler.dense.bias"}


@pytest.fixture(scope="module")
def tiny_mlx(tiny, tmp_path_factory):
    return convert(str(tiny.folder), tmp_path_factory.mktemp("export") / "mlx")


@pytest.fixture(scope="module")
def tiny_hf(tiny_mlx, tmp_path_factory):
    return export_hf(tiny_mlx, tmp_path_factory.mktemp("export") / "hf")


def _file_keys(path):
    with safe_open(str(path), "pt") as f:
        return set(f.keys()), f.metadata()


def _hf_expected(mlx_weights):
    """The tensors transformers should hold for an MLX folder's weights (pooler aside)."""
    out = {k: np.array(v.astype(mx.float32)) if v.dtype == mx.bfloat16 else np.array(v) for k, v in mlx_weights.items()}
    out[PATCH_CONV] = out[PATCH_CONV].transpose(0, 3, 1, 2)
    out[HEAD_DECODER_BIAS] = out[HEAD_BIAS]
    return out


def _torch_state(model):
    """The model's tensors under their file names (transformers 5 renames ViT's in memory)."""
    return {k: v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
            for k, v in legacy_state_dict(model, Spec()).items()}  # fmt: skip


def _assert_loads_bit_for_bit(hf_dir, mlx_dir, dtype=torch.float32):
    model, info = VisionEncoderDecoderModel.from_pretrained(hf_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model.dtype == dtype
    state = _torch_state(model)
    expected = _hf_expected(mx.load(str(mlx_dir / "model.safetensors")))
    assert set(state) == set(expected) | POOLER  # the pooler: built by transformers, unused by generation
    for name, value in expected.items():
        assert state[name].dtype == value.dtype and np.array_equal(state[name], value), name
    return model


def test_transformers_loads_it_cleanly_bit_for_bit_in_the_saved_layout(tiny, tiny_mlx, tiny_hf, tmp_path):
    assert {p.name for p in tiny_hf.iterdir()} == set(HF_FILES)
    model = _assert_loads_bit_for_bit(tiny_hf, tiny_mlx)
    assert not model.state_dict()["encoder.pooler.dense.weight"].any()  # a converted folder has no pooler: zeros

    # The names are the hub checkpoint's, and what transformers itself writes for such a model.
    keys, metadata = _file_keys(tiny_hf / "model.safetensors")
    assert metadata == {"format": "pt"}
    assert keys == _file_keys(tiny.folder / "model.safetensors")[0]
    tiny.oracle.save_pretrained(tmp_path / "saved")
    assert keys == _file_keys(tmp_path / "saved" / "model.safetensors")[0]

    config = json.loads((tiny_hf / "config.json").read_text())
    assert config["model_type"] == "vision-encoder-decoder" and config["tie_word_embeddings"] is False
    assert {k: config[k] for k in GENERATION} == GENERATION  # at the top level, as the hub's
    assert json.loads((tiny_hf / "generation_config.json").read_text()) == GENERATION
    decoder, encoder = config["decoder"], config["encoder"]
    assert decoder["model_type"] == "bert" and encoder["model_type"] == "vit"
    assert decoder["is_decoder"] is decoder["add_cross_attention"] is True and decoder["tie_word_embeddings"] is False
    assert (encoder["hidden_dropout_prob"], decoder["hidden_dropout_prob"]) == (0.0, 0.1)  # the hub's
    for part in ("encoder", "decoder"):  # every size the oracle was built with
        theirs = getattr(tiny.oracle.config, part).to_dict()
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "layer_norm_eps"):
            assert config[part][key] == theirs[key], (part, key)
    assert model.generation_config.num_beams == 4 and model.generation_config.no_repeat_ngram_size == 3

    assert json.loads((tiny_hf / "tokenizer_config.json").read_text()) == TOKENIZER_CONFIG  # kept from the source
    assert json.loads((tiny_hf / "special_tokens_map.json").read_text()) == SPECIAL_TOKENS_MAP
    assert (tiny_hf / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab_tokens()
    preprocessor = json.loads((tiny_hf / "preprocessor_config.json").read_text())
    assert preprocessor == {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "ViTImageProcessor", "image_std": [0.5, 0.5, 0.5], "resample": 2,
        "rescale_factor": 1 / 255, "size": {"height": 224, "width": 224},
    }  # fmt: skip


def test_upstream_manga_ocr_reads_it_as_we_read_the_mlx_folder(tiny_mlx, tiny_hf):
    upstream = manga_ocr.MangaOcr(str(tiny_hf), force_cpu=True)
    ours = mlx_mangaocr.load_ocr(tiny_mlx)
    assert [upstream(p) for p in IMAGES] == ours.process_images(IMAGES)  # the checkpoint's beam search
    upstream.model.generation_config.num_beams = 1
    assert [upstream(p) for p in IMAGES] == ours.process_images(IMAGES, num_beams=1)


def test_full_size_upstream_greedy(full, tmp_path):
    mlx_dir = convert(str(full.folder), tmp_path / "mlx")
    hf_dir = export_hf(mlx_dir, tmp_path / "hf")
    keys, _ = _file_keys(hf_dir / "model.safetensors")
    assert keys == _file_keys(full.folder / "model.safetensors")[0]
    upstream = manga_ocr.MangaOcr(str(hf_dir), True)
    upstream.model.generation_config.num_beams = 1
    ours = mlx_mangaocr.load_ocr(mlx_dir)
    for path in (IMAGES[0], IMAGES[2]):  # short outputs on this checkpoint
        assert upstream(path) == ours.process_image(path, num_beams=1), path.name


def test_converting_it_back_gives_the_same_weights(tiny_mlx, tiny_hf, tmp_path):
    back = convert(str(tiny_hf), tmp_path / "back")
    a, b = mx.load(str(tiny_mlx / "model.safetensors")), mx.load(str(back / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(a[k].dtype == b[k].dtype and mx.array_equal(a[k], b[k]).item() for k in a)
    assert json.loads((back / "config.json").read_text()) == json.loads((tiny_mlx / "config.json").read_text())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_is_exported_as_stored(tiny, tmp_path, dtype):
    mlx_dir = convert(str(tiny.folder), tmp_path / "mlx", dtype=dtype)
    hf_dir = export_hf(mlx_dir, tmp_path / "hf")
    _assert_loads_bit_for_bit(hf_dir, mlx_dir, getattr(torch, dtype))
    back = mx.load(str(convert(str(hf_dir), tmp_path / "back", dtype=dtype) / "model.safetensors"))
    stored = mx.load(str(mlx_dir / "model.safetensors"))
    assert all(back[k].dtype == stored[k].dtype and mx.array_equal(back[k], stored[k]).item() for k in stored)


@pytest.mark.parametrize("name", ["tiny", "tiny_tied_bin"])
def test_a_hugging_face_source_gives_transformers_the_same_model(name, request, tmp_path):
    """An unconverted folder (safetensors; or a .bin with a tied head and position_ids) exported as it
    is: transformers loads every tensor it loaded from the source, the pooler included."""
    built = request.getfixturevalue(name)
    model, info = VisionEncoderDecoderModel.from_pretrained(export_hf(built.folder, tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ours, theirs = _torch_state(model), _torch_state(built.oracle)
    assert ours.keys() == theirs.keys()
    # The untied head's Linear bias is the one transformers uses; both names now hold it.
    assert np.array_equal(ours[HEAD_BIAS], theirs[HEAD_DECODER_BIAS])
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs if k != HEAD_BIAS)


def test_command_line_writes_and_refuses(tiny, tiny_mlx, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["export", str(tiny_mlx), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}\n"
    assert {p.name for p in out.iterdir()} == set(HF_FILES)
    before = (out / "model.safetensors").read_bytes()

    def refused(args, message):
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mlx-mangaocr export: error: ") and err.count("\n") == 1 and message in err, err

    (out / "extra.txt").write_text("a file of the user's")
    refused([str(tiny_mlx), "-o", str(out)], "exists and is not empty; pass overwrite=True (--force)")
    assert (out / "extra.txt").is_file() and (out / "model.safetensors").read_bytes() == before
    assert main(["export", str(tiny_mlx), "-o", str(out), "--force"]) == 0
    assert {p.name for p in out.iterdir()} == set(HF_FILES)  # replaced as a whole
    capsys.readouterr()

    refused([str(tmp_path / "missing"), "-o", str(tmp_path / "x")], "model folder not found")
    (tmp_path / "empty").mkdir()
    refused([str(tmp_path / "empty"), "-o", str(tmp_path / "x")], "no config.json: not a model folder")
    quantized = convert(str(tiny.folder), tmp_path / "q8", quantize={"bits": 8, "group_size": 64})
    refused([str(quantized), "-o", str(tmp_path / "x")], "is quantized (8-bit, group size 64): Hugging Face cannot")
    refused([str(tiny_mlx), "-o", str(tiny_mlx)], "inside the source folder")
    refused([str(tiny_mlx), "-o", str(tiny_mlx / "hf"), "--force"], "inside the source folder")
    refused([str(tiny_mlx), "-o", str(tiny_mlx.parent), "--force"], "holds the source folder")
    assert not (tmp_path / "x").exists() and not (tiny_mlx / "hf").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "hf", "q8"]  # no .partial left anywhere

    with pytest.raises(ModelLoadError, match="is quantized"):
        export_hf(quantized, tmp_path / "x")
    with pytest.raises(SystemExit):  # -o is required
        main(["export", str(tiny_mlx)])


def test_a_failed_write_leaves_the_old_folder_and_no_partial(tiny_mlx, tmp_path, monkeypatch):
    out = export_hf(tiny_mlx, tmp_path / "hf")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(checkpoint, weights, folder, tokenizer_config=None):
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "write_hf_folder", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_hf(tiny_mlx, out, overwrite=True)
    with pytest.raises(OSError, match="No space left"):
        export_hf(tiny_mlx, tmp_path / "new")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
