"""Tests for risk.history: reading price files and computing horizon returns."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from risk.history import HistoryError, PriceHistory, read_history, returns

WIDE = """date,ES,NQ
2024-01-02,4742.83,16543.94
2024-01-03,4704.81,16368.49
2024-01-04,4688.68,16282.01
"""

LONG = """date,underlying,price
2024-01-03,ES,4704.81
2024-01-02,ES,4742.83
2024-01-02,NQ,16543.94
2024-01-03,NQ,16368.49
2024-01-04,ES,4688.68
2024-01-04,NQ,16282.01
"""

EXPECTED_DATES = np.array(["2024-01-02", "2024-01-03", "2024-01-04"], dtype="datetime64[D]")
EXPECTED_PRICES = np.array([[4742.83, 16543.94], [4704.81, 16368.49], [4688.68, 16282.01]])


def write(tmp_path, text, name="prices.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check_expected(history: PriceHistory) -> None:
    np.testing.assert_array_equal(history.dates, EXPECTED_DATES)
    assert history.dates.dtype == np.dtype("datetime64[D]")
    assert history.underlyings == ("ES", "NQ")
    np.testing.assert_array_equal(history.prices, EXPECTED_PRICES)
    assert history.prices.dtype == np.float64


# --------------------------------------------------------------------------- CSV


def test_wide_csv(tmp_path):
    check_expected(read_history(write(tmp_path, WIDE)))


def test_wide_csv_unsorted_with_bom_and_blank_lines(tmp_path):
    lines = WIDE.strip().split("\n")
    text = "\ufeff" + "\n".join([lines[0], lines[3], "", lines[1], lines[2]]) + "\n\n"
    check_expected(read_history(write(tmp_path, text)))


def test_long_csv(tmp_path):
    check_expected(read_history(write(tmp_path, LONG)))


def test_long_csv_columns_in_any_order(tmp_path):
    rows = [line.split(",") for line in LONG.strip().split("\n")]
    text = "\n".join(f"{r[2]},{r[0]},{r[1]}" for r in rows) + "\n"
    assert text.startswith("price,date,underlying")
    check_expected(read_history(write(tmp_path, text)))


@pytest.mark.parametrize(
    ("bad_cell", "replacement", "line", "column", "reason"),
    [
        ("4704.81", "-4704.81", 3, "ES", "must be > 0"),
        ("4704.81", "0", 3, "ES", "must be > 0"),
        ("16282.01", "", 4, "NQ", "missing price"),
        ("16282.01", "abc", 4, "NQ", "not a number"),
        ("16282.01", "nan", 4, "NQ", "not finite"),
        ("2024-01-03", "2024-13-03", 3, "date", "invalid date"),
        ("2024-01-03", "03/01/2024", 3, "date", "invalid date"),
    ],
)
def test_wide_csv_bad_cell_reports_line_column_value(tmp_path, bad_cell, replacement, line, column, reason):
    path = write(tmp_path, WIDE.replace(bad_cell, replacement))
    with pytest.raises(HistoryError, match=reason) as info:
        read_history(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == str(path)
    assert err.line == line
    assert err.column == column
    assert err.value == replacement
    assert f"line {line}" in str(err) and repr(column) in str(err) and str(path) in str(err)


def test_wide_csv_duplicate_date(tmp_path):
    path = write(tmp_path, WIDE + "2024-01-03,4705.00,16369.00\n")
    with pytest.raises(HistoryError, match=r"duplicate date \(first at line 3\)") as info:
        read_history(path)
    assert info.value.line == 5
    assert info.value.column == "date"
    assert info.value.value == "2024-01-03"


def test_wide_csv_short_row(tmp_path):
    path = write(tmp_path, WIDE + "2024-01-05,4700.00\n")
    with pytest.raises(HistoryError, match="expected 3 fields, got 2") as info:
        read_history(path)
    assert info.value.line == 5


def test_csv_bad_header(tmp_path):
    with pytest.raises(HistoryError, match="first column must be 'date'"):
        read_history(write(tmp_path, "day,ES\n2024-01-02,1\n"))
    with pytest.raises(HistoryError, match="duplicate column name"):
        read_history(write(tmp_path, "date,ES,ES\n2024-01-02,1,2\n"))
    with pytest.raises(HistoryError, match="empty file"):
        read_history(write(tmp_path, "\n\n"))
    with pytest.raises(HistoryError, match="no data rows"):
        read_history(write(tmp_path, "date,ES\n"))


def test_long_csv_duplicate(tmp_path):
    path = write(tmp_path, LONG + "2024-01-02,NQ,16544.00\n")
    with pytest.raises(HistoryError, match=r"duplicate price for 'NQ' on 2024-01-02 \(first at line 4\)") as info:
        read_history(path)
    assert info.value.line == 8


def test_long_csv_missing_cell(tmp_path):
    text = LONG.replace("2024-01-03,NQ,16368.49\n", "")
    with pytest.raises(HistoryError, match="missing price for underlying 'NQ' on 2024-01-03") as info:
        read_history(write(tmp_path, text))
    assert info.value.column == "price"


def test_long_csv_bad_price_line(tmp_path):
    path = write(tmp_path, LONG.replace("2024-01-04,ES,4688.68", "2024-01-04,ES,-1"))
    with pytest.raises(HistoryError, match="must be > 0") as info:
        read_history(path)
    assert (info.value.line, info.value.column, info.value.value) == (6, "price", "-1")


# --------------------------------------------------------------------------- Parquet


def test_parquet_wide_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "date": pa.array([dt.date(2024, 1, 4), dt.date(2024, 1, 2), dt.date(2024, 1, 3)], type=pa.date32()),
            "ES": pa.array([4688.68, 4742.83, 4704.81]),
            "NQ": pa.array([16282.01, 16543.94, 16368.49], type=pa.float32()).cast(pa.float64()),
        }
    )
    path = tmp_path / "prices.parquet"
    pq.write_table(table, path)
    history = read_history(path)
    np.testing.assert_array_equal(history.dates, EXPECTED_DATES)
    assert history.underlyings == ("ES", "NQ")
    np.testing.assert_allclose(history.prices, EXPECTED_PRICES, rtol=1e-6)


def test_parquet_long_round_trip_string_dates_and_magic_detection(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [line.split(",") for line in LONG.strip().split("\n")[1:]]
    table = pa.table(
        {
            "date": [r[0] for r in rows],
            "underlying": [r[1] for r in rows],
            "price": [float(r[2]) for r in rows],
        }
    )
    path = tmp_path / "prices.bin"  # no extension: detected by the PAR1 magic
    pq.write_table(table, path)
    check_expected(read_history(path))


def test_parquet_errors_report_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "date": pa.array([dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 3)]),
            "ES": pa.array([4742.83, None, 4704.81]),
        }
    )
    path = tmp_path / "missing.parquet"
    pq.write_table(table, path)
    with pytest.raises(HistoryError, match="missing price") as info:
        read_history(path)
    assert (info.value.row, info.value.column, info.value.line) == (2, "ES", None)
    assert "row 2" in str(info.value)

    table = table.set_column(1, "ES", pa.array([4742.83, 4704.81, 4704.81]))
    pq.write_table(table, path)
    with pytest.raises(HistoryError, match=r"duplicate date \(first at row 2\)") as info:
        read_history(path)
    assert info.value.row == 3

    stamped = pa.table({"date": pa.array([dt.datetime(2024, 1, 2, 16, 0)]), "ES": [1.0]})
    pq.write_table(stamped, path)
    with pytest.raises(HistoryError, match="time of day"):
        read_history(path)


# --------------------------------------------------------------------------- returns


def test_returns_shape_and_values():
    prices = np.array([[100.0, 10.0], [101.0, 11.0], [99.0, 12.0], [102.0, 12.0], [103.0, 9.0]])
    one_day = returns(prices, horizon_days=1, window=3)
    assert one_day.shape == (3, 2)
    # Last three one-day returns: P[2]/P[1], P[3]/P[2], P[4]/P[3].
    np.testing.assert_allclose(
        one_day,
        [[99 / 101 - 1, 12 / 11 - 1], [102 / 99 - 1, 0.0], [103 / 102 - 1, 9 / 12 - 1]],
        rtol=1e-14,
    )
    two_day = returns(prices, horizon_days=2, window=2)
    # Overlapping two-day windows ending on the last price: P[3]/P[1], P[4]/P[2].
    np.testing.assert_allclose(two_day, [[102 / 101 - 1, 12 / 11 - 1], [103 / 99 - 1, 9 / 12 - 1]], rtol=1e-14)
    everything = returns(prices, horizon_days=1, window=None)
    assert everything.shape == (4, 2)
    np.testing.assert_allclose(everything[-3:], one_day)


def test_returns_default_window_is_252():
    prices = np.exp(np.cumsum(np.full((300, 3), 0.001), axis=0))
    r = returns(prices)
    assert r.shape == (252, 3)
    np.testing.assert_allclose(r, np.exp(0.001) - 1, rtol=1e-9)


def test_returns_not_enough_history():
    prices = np.ones((10, 2))
    returns(prices, horizon_days=2, window=8)  # exactly enough: 8 + 2 prices
    with pytest.raises(HistoryError, match="not enough history: 9 returns over 2 day\\(s\\) need 11 prices, got 10"):
        returns(prices, horizon_days=2, window=9)


def test_returns_rejects_bad_prices_and_arguments():
    prices = np.ones((5, 2))
    prices[3, 1] = 0.0
    with pytest.raises(HistoryError, match="row 3, column 1"):
        returns(prices, window=3)
    with pytest.raises(ValueError, match="horizon_days"):
        returns(np.ones((5, 2)), horizon_days=0)
    with pytest.raises(ValueError, match="window"):
        returns(np.ones((5, 2)), window=0)


def test_read_then_returns(tmp_path):
    history = read_history(write(tmp_path, WIDE))
    r = returns(history.prices, window=2)
    np.testing.assert_allclose(r[-1], EXPECTED_PRICES[2] / EXPECTED_PRICES[1] - 1)
