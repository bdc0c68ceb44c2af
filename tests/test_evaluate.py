"""Downstream evaluation: annotation parsing/aggregation and metric definitions."""
from __future__ import annotations

import numpy as np
import pytest

from sea_core.errors import DataError
from sea_core.evaluate import metrics, read_annotations

HEADER = ("split,sensor_id,audio_filename,annotator_id,1_engine_presence,"
          "1-1_small-sounding-engine_presence,2_machinery-impact_presence,8_dog_presence\n")


def test_annotations_coarse_classes_and_verified_rows_win(tmp_path):
    csv = tmp_path / "annotations.csv"
    csv.write_text(HEADER +
                   # train clip: crowd only -> any positive counts
                   "train,1,a.wav,12,1,1,0,0\n"
                   "train,1,a.wav,13,0,0,0,1\n"
                   # validate clip: verified row (annotator 0) wins over crowd positives
                   "validate,2,b.wav,14,1,1,1,1\n"
                   "validate,2,b.wav,0,0,0,1,0\n"
                   "test,3,c.wav,0,1,0,0,0\n")
    data = read_annotations(csv)
    assert data.classes == ["engine", "machinery-impact", "dog"]  # fine column ignored
    assert data.files == {"train": ["a.wav"], "validate": ["b.wav"], "test": ["c.wav"]}
    np.testing.assert_array_equal(data.labels["train"], [[1, 0, 1]])
    np.testing.assert_array_equal(data.labels["validate"], [[0, 1, 0]])
    np.testing.assert_array_equal(data.labels["test"], [[1, 0, 0]])


def test_annotations_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "a.csv"
    bad.write_text("audio_filename,1_engine_presence\nx.wav,1\n")
    with pytest.raises(DataError, match=r"a.csv: missing column 'split'"):
        read_annotations(bad)
    bad.write_text("split,audio_filename,1_engine_presence\ntrain,x.wav,maybe\n")
    with pytest.raises(DataError, match=r"a.csv:2: column '1_engine_presence'"):
        read_annotations(bad)
    with pytest.raises(DataError, match="not found"):
        read_annotations(tmp_path / "missing.csv")


def test_metrics_hand_made_average_precision():
    # class 0: scores ranked 0.9(+) 0.8(-) 0.7(+) 0.6(-): AP = 0.5*1 + 0.5*(2/3) = 0.8333
    # class 1: 0.9(-) 0.8(+) 0.7(-) 0.6(-): AP = 1 * 1/2 = 0.5
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.6, 0.6]])
    m = metrics(y, s, ["a", "b"])
    assert m["per_class_auprc"]["a"] == pytest.approx(5 / 6)
    assert m["per_class_auprc"]["b"] == pytest.approx(0.5)
    assert m["macro_auprc"] == pytest.approx((5 / 6 + 0.5) / 2)
    # micro: flattened pairs sorted by score (ties at equal score count as one threshold):
    # 0.9: {+,-} P=1/2 R=1/3; 0.8: {-,+} P=2/4 R=2/3; 0.7: {+,-} P=3/6 R=1; AP = 0.5
    assert m["micro_auprc"] == pytest.approx(0.5)
    # micro-F1 at 0.5: everything predicted positive: P = 3/8, R = 1 -> F1 = 6/11
    assert m["micro_f1"] == pytest.approx(6 / 11)


def test_metrics_class_without_positives_is_undefined_not_zero():
    y = np.array([[1, 0], [0, 0]])
    s = np.array([[0.8, 0.1], [0.2, 0.3]])
    m = metrics(y, s, ["a", "b"])
    assert m["per_class_auprc"]["b"] is None
    assert m["macro_auprc"] == pytest.approx(1.0)
