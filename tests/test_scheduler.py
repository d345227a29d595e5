"""Continuous batching: every image gets exactly the ids it gets decoded alone, whatever it shares
the batch with, the batch size or the order of arrival; the step is traced once per batch shape;
the row-step counts follow from the images' own lengths."""

import itertools
import random

import numpy as np
import pytest
from oracle import generated_images

import mlx_mangaocr.engine.steppers as generate_module
from mlx_mangaocr import MangaOcrProcessor, load_mlx_processor
from testing.synthetic import IMAGES

# Ragged settings on the tiny checkpoint (its own lengths: 11 to 63 tokens greedy, 42 to 53 beam):
# max_length 40 and 20 cut some rows, which then run to max_length.
SETTINGS = [
    {"num_beams": 1},
    {"num_beams": 1, "max_length": 40},
    {},  # the checkpoint's own: 4 beams, no_repeat_ngram_size=3, length_penalty=2.0, early stop
    {"num_beams": 3, "length_penalty": 0.5, "early_stopping": False, "max_length": 20},
    {"num_beams": 2, "early_stopping": "never", "no_repeat_ngram_size": 2, "max_length": 50},
]


@pytest.fixture(scope="module")
def inputs():
    return list(IMAGES) + [image for _, image in generated_images()]


@pytest.fixture(scope="module")
def alone(tiny_processor, inputs):
    """Each setting's ids for every input decoded on its own (a static batch of one)."""
    return {str(s): [tiny_processor.generate_ids([image], **s)[0] for image in inputs] for s in SETTINGS}


@pytest.mark.parametrize("settings", SETTINGS, ids=[str(s) for s in SETTINGS])
def test_continuous_ids_equal_one_at_a_time_for_any_batch_size_and_order(tiny_processor, inputs, alone, settings):
    expected = alone[str(settings)]
    lengths = [len(ids) for ids in expected]
    if settings in ({"num_beams": 1}, {}):
        assert len(set(lengths)) >= 5  # ragged
    if "max_length" in settings:
        assert max(lengths) == settings["max_length"]  # some rows run to max_length
    rng = random.Random(0)
    for batch_size in (1, 3, 8):
        order = list(range(len(inputs)))
        rng.shuffle(order)
        got = tiny_processor.recognize([inputs[i] for i in order], batch_size=batch_size, **settings)
        assert [r.ids for r in got] == [expected[i] for i in order], f"batch {batch_size}"
    texts = tiny_processor.process_images(inputs, batch_size=5, scheduler="continuous", **settings)
    assert texts == [tiny_processor.decode(ids) for ids in expected]


def test_static_scheduler_gives_the_same_results(tiny_processor, inputs, alone):
    for settings in ({"num_beams": 1}, {}):
        static = tiny_processor.recognize(inputs, batch_size=6, scheduler="static", **settings)
        continuous = tiny_processor.recognize(inputs, batch_size=6, scheduler="continuous", **settings)
        assert [r.ids for r in static] == [r.ids for r in continuous] == alone[str(settings)]
        # Alone, both schedulers run the same teacher-forced pass on the same arrays: equal exactly.
        alone_static = [r.confidence for r in tiny_processor.recognize(inputs, 1, "static", **settings)]
        alone_continuous = [r.confidence for r in tiny_processor.recognize(inputs, 1, "continuous", **settings)]
        assert alone_static == alone_continuous
        # In batches the sums run in other orders, so no fixed tolerance holds on every CPU; instead
        # each image's confidence must be nearer its own alone than any other image's (not a neighbour's).
        for batched in (static, continuous):
            for i, r in enumerate(batched):
                own = abs(r.confidence - alone_static[i])
                others = [abs(r.confidence - c) for j, c in enumerate(alone_static) if c != alone_static[i]]
                assert own < min(others, default=np.inf), i


def test_row_step_counts_follow_from_the_images_own_lengths(tiny_processor, inputs, alone):
    expected = alone[str({"num_beams": 1})]
    own = [len(ids) - 1 for ids in expected]  # greedy: one step per generated token
    batch = 6
    before = _snapshot(tiny_processor.stats)
    tiny_processor.process_images(inputs, batch_size=batch, scheduler="static", num_beams=1)
    static = _delta(tiny_processor.stats, before)
    chunks = [own[i : i + batch] for i in range(0, len(own), batch)]
    assert static["needed_row_steps"] == sum(own)
    assert static["row_steps"] == sum(max(c) * len(c) for c in chunks)  # each batch runs to its longest
    assert static["images"] == len(inputs)

    before = _snapshot(tiny_processor.stats)
    tiny_processor.process_images(inputs, batch_size=batch, scheduler="continuous", num_beams=1)
    continuous = _delta(tiny_processor.stats, before)
    assert continuous["needed_row_steps"] == sum(own)
    assert sum(own) <= continuous["row_steps"] < static["row_steps"]

    before = _snapshot(tiny_processor.stats)
    tiny_processor.process_images(inputs, batch_size=1, num_beams=1)
    one = _delta(tiny_processor.stats, before)
    assert one["row_steps"] == one["needed_row_steps"] == sum(own)  # nothing wasted, one at a time


def _snapshot(stats):
    return {k: getattr(stats, k) for k in ("images", "steps", "row_steps", "needed_row_steps")}


def _delta(stats, before):
    return {k: getattr(stats, k) - v for k, v in before.items()}


def test_compiled_step_is_traced_once_per_batch_shape(tiny, inputs, monkeypatch):
    traced = []
    pure_step = generate_module._pure_step

    def counting(model):
        step = pure_step(model)

        def wrapped(tokens, position, keys, *rest):
            traced.append((tokens.shape[0], keys[0].shape[2]))  # runs only while mx.compile traces
            return step(tokens, position, keys, *rest)

        return wrapped

    monkeypatch.setattr(generate_module, "_pure_step", counting)
    processor = load_mlx_processor(tiny.folder)  # a fresh model: nothing compiled yet
    for settings in ({"num_beams": 1}, {}):
        processor.process_images(inputs * 2, batch_size=8, **settings)
        processor.process_images(inputs, batch_size=8, **settings)
    # Each batch shape (rows, cache capacity) once, over all the runs.
    assert traced and len(traced) == len(set(traced))
    rows, capacities = {r for r, _ in traced}, {c for _, c in traced}
    assert {8, 4, 2, 1} <= rows and {32, 16} <= rows  # greedy rows; 4 beams x 8 and x 4 units
    assert {16, 32, 64} <= capacities  # the cache grows with the longest row (11 to 63 tokens)


def test_continuous_reads_its_input_as_it_goes(tiny_processor):
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield IMAGES[i % len(IMAGES)]

    texts = tiny_processor.iter_images(endless(), batch_size=4, num_beams=1)
    first = [next(texts) for _ in range(6)]
    assert first == [tiny_processor.process_image(p, num_beams=1) for p in IMAGES[:6]]
    assert len(pulled) <= 6 + 3 * 4  # a few micro-batches ahead, not the whole stream


def test_bad_scheduler_and_batch_size_are_refused(tiny_processor):
    with pytest.raises(ValueError, match="scheduler must be one of continuous, static"):
        tiny_processor.process_images(IMAGES[:2], scheduler="dynamic")
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        tiny_processor.recognize(IMAGES[:2], batch_size=0)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        MangaOcrProcessor(tiny_processor.checkpoint, scheduler="nope")


def test_a_model_goes_when_its_processor_goes(tiny):
    """The compiled decoder step is kept with its model, not beside it: loading and dropping
    processors (as tools that re-create MangaOcr do) frees each model."""
    import gc
    import weakref

    refs = []
    for _ in range(3):
        processor = load_mlx_processor(tiny.folder)
        processor.process_image(IMAGES[0], num_beams=1)  # compiles the step
        refs.append(weakref.ref(processor.model))
        del processor
        gc.collect()
    assert all(ref() is None for ref in refs)
