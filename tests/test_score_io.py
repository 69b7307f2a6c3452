"""spider_jax.score_io: the column-wise writers against a row-by-row csv.writer reference,
Parquet round trip, --top, the background writer and the prefetching reader."""
import csv
import io
import threading

import numpy as np
import pytest

from spider_jax import score_io

MODELS = ["m_a", "m_b", "m_c", "m_d"]


def _reference_rows(names, scores, top=None):
    """Row by row: PTMs by descending score, ties by zoo order."""
    rows = []
    for t, s in zip(names, scores):
        order = sorted(range(len(MODELS)), key=lambda m: (-float(s[m]), m))[:top]
        rows += [(t, MODELS[m], np.float32(s[m]), r + 1) for r, m in enumerate(order)]
    return rows


def _blocks():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 4)).astype(np.float32)
    scores[3] = [0.5, 0.5, 0.25, 0.5]  # ties keep zoo order
    names = [f"task{i}" for i in range(7)]
    return [(names[:3], scores[:3]), (names[3:], scores[3:])], names, scores


def _without_pyarrow(monkeypatch):
    import sys
    for mod in ("pyarrow", "pyarrow.csv", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, mod, None)  # import now raises ImportError


@pytest.mark.parametrize("arrow", [True, False])
@pytest.mark.parametrize("top", [None, 2, 10])
def test_csv_equals_row_by_row_reference(top, arrow, monkeypatch):
    if arrow:
        pytest.importorskip("pyarrow")
    else:
        _without_pyarrow(monkeypatch)
    blocks, names, scores = _blocks()
    buf = io.BytesIO()
    score_io.write_scores(buf, blocks, MODELS, parquet=False, top=top)
    rows = list(csv.reader(io.StringIO(buf.getvalue().decode())))
    assert rows[0] == ["task", "model", "score", "rank"]
    got = [(t, m, np.float32(s), int(r)) for t, m, s, r in rows[1:]]
    want = _reference_rows(names, scores, top)
    if arrow:  # shortest float32 round trip: exact
        assert got == want
    else:  # %.7g: ranks and names exact, scores to 7 digits
        assert [g[:2] + g[3:] for g in got] == [w[:2] + w[3:] for w in want]
        np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], rtol=1e-6)


def test_parquet_round_trip_equals_csv():
    pq = pytest.importorskip("pyarrow.parquet")
    blocks, names, scores = _blocks()
    buf = io.BytesIO()
    score_io.write_scores(buf, blocks, MODELS, parquet=True, top=3)
    table = pq.read_table(io.BytesIO(buf.getvalue())).to_pydict()
    got = [(t, m, np.float32(s), r) for t, m, s, r in zip(*(table[k] for k in ("task", "model", "score", "rank")))]
    assert got == _reference_rows(names, scores, 3)


def test_csv_names_that_need_quoting(monkeypatch):
    pytest.importorskip("pyarrow")
    buf = io.BytesIO()
    score_io.write_scores(buf, [(['a,"b'], np.zeros((1, 4)))], MODELS, parquet=False, top=1)
    assert list(csv.reader(io.StringIO(buf.getvalue().decode())))[1][0] == 'a,"b'
    _without_pyarrow(monkeypatch)  # the plain writer refuses them
    with pytest.raises(ValueError, match="task name 'a,b'"):
        score_io.write_scores(io.BytesIO(), [(["a,b"], np.zeros((1, 4)))], MODELS, parquet=False)
    with pytest.raises(ValueError, match="needs pyarrow"):
        score_io.write_scores(io.BytesIO(), [], MODELS, parquet=True)


def test_background_writer_keeps_order_and_reraises():
    seen = []
    with score_io.BackgroundWriter(max_pending=2) as w:
        for i in range(10):
            w.submit(seen.append, (i, threading.current_thread().name))
    assert [i for i, _ in seen] == list(range(10))

    def fail(_):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with score_io.BackgroundWriter() as w:
            w.submit(fail, 0)


def test_prefetch_yields_in_order():
    assert list(score_io.prefetch(lambda x: x * x, range(7), depth=3)) == [x * x for x in range(7)]
    assert list(score_io.prefetch(lambda x: x, [])) == []
