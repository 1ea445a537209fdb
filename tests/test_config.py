"""daemon.config.load_config and ``riskd config check``: good configs load, bad ones say exactly what is wrong.

Every bad config here is the built-in default (parsed with tomllib), changed in
one place and written back with a tiny TOML writer, so the tests do not depend
on the default file's comments or layout. A ConfigError must name the file, the
dotted path of the field (dict keys and list indices included), what was expected
and the value found.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import pytest

from daemon.cli import main
from daemon.config import ConfigError, load_config

DEFAULT = "builtin:default.toml"


# --------------------------------------------------------------------------- a tiny TOML writer

def _key(name: str) -> str:
    bare = name and all(c.isalnum() or c in "-_" for c in name) and name.isascii()
    return name if bare else json.dumps(name)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string for the ASCII text used here
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(data: dict[str, Any]) -> str:
    """Every top-level key as one ``key = inline value`` line (inline tables and arrays)."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in data.items())


def default_data() -> dict[str, Any]:
    return tomllib.loads(resources.files("configs").joinpath("default.toml").read_text(encoding="utf-8"))


def _instrument_index(data: dict[str, Any], instrument_id: str) -> int:
    return next(i for i, spec in enumerate(data["instruments"]) if spec["id"] == instrument_id)


def _write(tmp_path: Path, data: dict[str, Any], name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def _bad(tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> tuple[ConfigError, str]:
    """Mutate the default config, write it, load it: the ConfigError and the file's path."""
    data = default_data()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value, str(path)


def _check(err: ConfigError, source: str, field: str, *fragments: str) -> None:
    text = str(err)
    assert err.source == source
    assert text.startswith(f"{source}: "), text
    assert err.path == field, text
    assert f"{source}: {field}: " in text, text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


def _set(*keys_and_value: Any) -> Callable[[dict[str, Any]], None]:
    *keys, value = keys_and_value

    def mutate(data: dict[str, Any]) -> None:
        node = data
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return mutate


def _delete(*keys: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        node = data
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return mutate


# --------------------------------------------------------------------------- good configs

def test_builtin_default_loads() -> None:
    config = load_config(DEFAULT)
    assert [u.id for u in config.underlyings] == ["SPX", "NDX"]
    assert {u.id: u.sector for u in config.underlyings} == {"SPX": "broad", "NDX": "tech"}
    assert len(config.instruments) == 8
    assert [a.id for a in config.accounts] == ["ACC-HEDGED", "ACC-SHORTVOL", "ACC-VAR"]
    assert sorted(config.margin.grids) == ["pm", "span_index", "span_tech"]
    assert sorted(config.margin.profiles) == ["conservative", "span"]
    span = config.margin.grids["span_index"]
    assert (span.price_scan_range, span.vol_scan_range, span.extreme_multiple, span.extreme_fraction,
            span.lookahead_days) == (0.08, 0.04, 3.0, 0.35, 1.0)
    assert config.margin.grids["pm"].buckets_per_side == 4
    assert [s.name for s in config.margin.stress] == ["tech crash", "broad rally"]
    assert config.history == "builtin:sample_history.csv"


def test_toml_writer_round_trips_the_default(tmp_path: Path) -> None:
    """The writer the bad-config tests rely on: unchanged data loads to the same config."""
    data = default_data()
    path = _write(tmp_path, data, "same.toml")
    assert tomllib.loads(path.read_text()) == data
    assert load_config(path) == load_config(DEFAULT)


def test_relative_history_path_is_resolved_from_the_config_folder(tmp_path: Path) -> None:
    data = default_data()
    data["history"] = "hist/closes.csv"
    config = load_config(_write(tmp_path, data, "rel.toml"))
    assert config.history == str((tmp_path / "hist" / "closes.csv").resolve())


# --------------------------------------------------------------------------- bad values: one field each

def test_wrong_type(tmp_path: Path) -> None:
    err, src = _bad(tmp_path, _set("margin", "grids", "span_index", "price_scan_range", "eight"))
    _check(err, src, "margin.grids.span_index.price_scan_range", "expected float", "found 'eight'")


def test_wrong_type_in_a_list_item(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["instruments"][2]["strike"] = "7000"
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "instruments[2].strike", "expected float", "found '7000'")


def test_wrong_type_under_a_dict_key_inside_a_list(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["margin"]["stress"][0]["sector_vol_shifts"]["tech"] = "x"
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "margin.stress[0].sector_vol_shifts.tech", "expected float", "found 'x'")


def test_negative_scan_range(tmp_path: Path) -> None:
    err, src = _bad(tmp_path, _set("margin", "grids", "span_index", "price_scan_range", -0.08))
    _check(err, src, "margin.grids.span_index.price_scan_range", "expected float > 0", "found -0.08")


def test_extreme_fraction_above_one(tmp_path: Path) -> None:
    err, src = _bad(tmp_path, _set("margin", "grids", "span_index", "extreme_fraction", 1.35))
    _check(err, src, "margin.grids.span_index.extreme_fraction", "expected float <= 1", "found 1.35")


def test_mm_factor_above_one_in_second_profile(tmp_path: Path) -> None:
    err, src = _bad(tmp_path, _set("margin", "profiles", "conservative", "mm_factor", 1.8))
    _check(err, src, "margin.profiles.conservative.mm_factor", "expected float <= 1", "found 1.8")


def test_unknown_field_typo(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        grid = data["margin"]["grids"]["span_index"]
        grid["vol_scan_rnage"] = grid.pop("vol_scan_range")
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "margin.grids.span_index.vol_scan_rnage", "unknown field")


def test_unknown_field_typo_in_a_list_item(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["underlyings"][1]["sectr"] = data["underlyings"][1].pop("sector")
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "underlyings[1].sectr", "unknown field")


def test_missing_required_field(tmp_path: Path) -> None:
    err, src = _bad(tmp_path, _delete("margin", "grids", "span_tech", "price_scan_range"))
    _check(err, src, "margin.grids.span_tech.price_scan_range", "required field is missing")


def test_bad_tagged_union_family_names_field_and_value(tmp_path: Path) -> None:
    err, src = _bad(tmp_path, _set("margin", "grids", "pm", "family", "portfolo"))
    _check(err, src, "margin.grids.pm.family", "'portfolo'")


def test_bad_tagged_union_family_says_what_is_expected(tmp_path: Path) -> None:
    err, _ = _bad(tmp_path, _set("margin", "grids", "pm", "family", "portfolo"))
    assert "expected" in str(err)
    assert "'span'" in str(err) and "'portfolio'" in str(err)


def test_instrument_with_unknown_underlying_names_the_exact_field(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["instruments"][6]["underlying"] = "NDY"
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "instruments[6].underlying", "'NDY'", "SPX", "NDX")


def test_underlying_naming_unknown_grid(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["underlyings"][1]["grid"] = "span_tec"
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "underlyings[1].grid", "expected one of the grids", "'span_tech'", "found 'span_tec'")


def test_account_naming_unknown_profile(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["accounts"][2]["profile"] = "conservativ"
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "accounts[2].profile", "expected one of the profiles", "'conservative'",
           "found 'conservativ'")


def test_tier_thresholds_not_increasing(tmp_path: Path) -> None:
    err, src = _bad(tmp_path, _set("margin", "tiers", "reduce_only", 0.65))
    _check(err, src, "margin.tiers.reduce_only", "thresholds must increase", "margin_call", "found 0.65")


def test_option_without_strike_names_the_option(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        del data["instruments"][2]["strike"]
    err, src = _bad(tmp_path, mutate)
    text = str(err)
    assert err.path.startswith("instruments[2]"), text
    assert text.startswith(f"{src}: instruments[2]")
    assert "'SPX 261218C7000'" in text and "strike" in text


def test_option_without_strike_names_the_strike_field(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        del data["instruments"][2]["strike"]
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "instruments[2].strike", "missing")


def test_instrument_kind_typo_names_field_and_value(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["instruments"][5]["kind"] = "futures"
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "instruments[5].kind", "'futures'")


def test_instrument_kind_typo_says_what_is_expected(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["instruments"][5]["kind"] = "futures"
    err, _ = _bad(tmp_path, mutate)
    assert "expected" in str(err)
    assert all(k in str(err) for k in ("'spot'", "'future'", "'option'"))


def test_bad_expiry_date_shows_the_value(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["instruments"][4]["expiry"] = "March"
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "instruments[4].expiry", "expected", "'March'")


def test_out_of_range_dict_value_names_the_key(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["margin"]["stress"][0]["sector_moves"]["tech"] = -1.2
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "margin.stress[0].sector_moves.tech", "expected float > -1", "found -1.2")


def test_quoted_number_in_a_grid_names_the_grid(tmp_path: Path) -> None:
    err, src = _bad(tmp_path, _set("margin", "grids", "span_index", "price_scan_range", "0.08"))
    _check(err, src, "margin.grids.span_index.price_scan_range", "expected float", "found '0.08'")


def test_duplicate_account_id(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["accounts"][2]["id"] = "ACC-HEDGED"
    err, src = _bad(tmp_path, mutate)
    _check(err, src, "accounts", "'ACC-HEDGED'", "defined twice")


# --------------------------------------------------------------------------- unreadable files

def test_invalid_toml_syntax(tmp_path: Path) -> None:
    path = tmp_path / "syntax.toml"
    path.write_text('[margin.tiers\nmargin_call = 0.7\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.path == ""
    assert str(err).startswith(f"{path}: not valid TOML")
    assert "line 1" in str(err)


def test_file_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: cannot read")
    assert "No such file" in str(info.value)


def test_unknown_builtin() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("builtin:nope.toml")
    assert str(info.value) == "builtin:nope.toml: no such built-in config"


# --------------------------------------------------------------------------- riskd config check

def test_cli_config_check_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", DEFAULT]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"{DEFAULT}: ok")
    assert "2 underlyings, 8 instruments, 3 accounts" in out


def test_cli_config_check_written_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, default_data(), "copy.toml")
    assert main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok")


def test_cli_config_check_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = default_data()
    data["margin"]["grids"]["span_index"]["price_scan_range"] = -0.08
    path = _write(tmp_path, data)
    assert main(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"riskd: {path}: margin.grids.span_index.price_scan_range: expected float > 0")
    assert "found -0.08" in err


def test_cli_config_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.toml"
    assert main(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{path}: cannot read" in err
