"""The synthetic price history shipped as configs/sample_history.csv.

Two correlated geometric Brownian motions (SPX 16 % vol, NDX 22 % vol,
correlation 0.85), 600 business days ending 2026-11-20, seeded: regenerate with
``python -m daemon.sample_data configs/sample_history.csv``. It is sample data
for the demo and tests, not market data.
"""

from __future__ import annotations

import datetime as dt
import sys

import numpy as np


def sample_history(days: int = 600, seed: int = 20261120) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """Business dates (oldest first) and closes per underlying."""
    rng = np.random.default_rng(seed)
    vols = np.array([0.16, 0.22]) / np.sqrt(252.0)
    corr = np.array([[1.0, 0.85], [0.85, 1.0]])
    shocks = rng.standard_normal((days, 2)) @ np.linalg.cholesky(corr).T * vols
    # Fat tails: a few jump days, as real index histories have.
    jumps = rng.random(days) < 0.01
    shocks[jumps] *= 4.0
    # Demean so the sample neither booms nor busts over the window.
    shocks -= shocks.mean(axis=0)
    closes = np.exp(np.cumsum(shocks, axis=0))
    closes = closes / closes[-1] * np.array([6900.0, 24500.0])
    end = dt.date(2026, 11, 20)
    dates: list[dt.date] = []
    day = end
    while len(dates) < days:
        if day.weekday() < 5:
            dates.append(day)
        day -= dt.timedelta(days=1)
    return dates[::-1], {"SPX": closes[:, 0], "NDX": closes[:, 1]}


def write_csv(path: str) -> None:
    dates, closes = sample_history()
    with open(path, "w", encoding="utf-8") as out:
        out.write("date," + ",".join(closes) + "\n")
        for i, date in enumerate(dates):
            out.write(date.isoformat() + "," + ",".join(f"{c[i]:.4f}" for c in closes.values()) + "\n")


if __name__ == "__main__":
    write_csv(sys.argv[1])
