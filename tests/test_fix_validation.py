"""FIX 4.4 dictionary and message validation (fix.dictionary, fix.validation).

Inputs are the messages of QuickFIX's acceptance scripts (14a-14i, 15, 21, 2q, 2r,
ReverseRoute*, RejectResentMessage) with the reject each script expects, the cases
where several problems compete (QuickFIX's DataDictionary::validate decides which is
reported), valid messages of every supported type, and a randomised check that the
fast wire-order pass and the exact QuickFIX-order pass always agree.

This product includes software developed by quickfixengine.org
(http://www.quickfixengine.org/).
"""

from __future__ import annotations

import random
import time

import pytest

from fix import dictionary as dd
from fix import validation as v
from fix.parser import parse
from fix.validation import (REJECT_TEXT, FixMessageError, FixValidationError, GarbledMessage, UnsupportedVersion,
                            reverse_route_fields, validate)

TIME = "20240415-13:45:01"
HDR = f"34=2|49=TW44|52={TIME}|56=ISLD|"


def raw_message(body: str, begin: str = "FIX.4.4") -> bytes:
    """A wire message: 8, computed 9, ``body`` ('|' for SOH, from 35= on), computed 10."""
    b = body.replace("|", "\x01").encode("latin-1")
    head = f"8={begin}\x019={len(b)}\x01".encode()
    return head + b + b"10=%03d\x01" % (sum(head + b) % 256)


def check(body: str, begin: str = "FIX.4.4") -> tuple[int, str | None] | None:
    """validate() on the message: None when valid, else (SessionRejectReason, RefTagID)."""
    try:
        validate(parse(raw_message(body, begin)))
    except FixValidationError as e:
        assert e.text == REJECT_TEXT[e.reason]
        return e.reason, e.tag
    return None


def nos(extra: str = "", **override: str) -> str:
    """A NewOrderSingle body (valid unless changed), fields in the scripts' order."""
    fields = {"11": "ID", "21": "1", "40": "1", "54": "1", "38": "200.00", "55": "INTC", "60": TIME}
    fields.update({k.lstrip("_"): x for k, x in override.items()})
    return "35=D|" + HDR + "".join(f"{k}={x}|" for k, x in fields.items() if x is not None) + extra


# ------------------------------------------------------------- the scripts' cases
SCRIPT_CASES = [
    # 14a: tag not in the specification, below range, negative, user-defined range
    ("14a 999", f"35=0|{HDR}999=HI|", (0, "999")),
    ("14a 0", f"35=0|{HDR}0=HI|", (0, "0")),
    ("14a -1", f"35=0|{HDR}-1=HI|", (0, "-1")),
    ("14a 5000", f"35=0|{HDR}5000=HI|", (0, "5000")),
    # 14b: required header field missing; required body field missing
    ("14b header", f"35=0|34=2|49=TW44|52={TIME}|", (1, "56")),
    ("14b body", f"35=D|49=TW44|34=3|56=ISLD|52={TIME}|40=1|60={TIME}|54=1|21=3|", (1, "11")),
    # 14c: known tag, not in this message type
    ("14c", f"35=0|{HDR}55=MSFT|", (2, "55")),
    # 14d: tag without a value (a header field)
    ("14d", f"35=0|34=2|49=TW44|52={TIME}|56=|", (4, "56")),
    # 14e: values not in the enumeration; and a good one
    ("14e HandlInst", f"35=D|{HDR}11=ID|21=4|40=1|54=1|38=002000.00|55=INTC|60={TIME}|", (5, "21")),
    ("14e SecurityType", f"35=D|{HDR}11=ID|21=1|40=1|54=1|38=002000.00|55=INTC|60={TIME}|167=BOO|", (5, "167")),
    ("14e CS", f"35=D|{HDR}11=ID|21=1|40=1|54=1|38=002000.00|55=INTC|60={TIME}|167=CS|", None),
    # 14f: leading '+' on a QTY
    ("14f", f"35=D|{HDR}11=ID|21=1|40=1|54=1|38=+200.00|55=INTC|60={TIME}|", (6, "38")),
    # 14g: header fields after body fields
    ("14g all", f"35=D|11=id|21=3|40=1|54=1|55=MSFT|60={TIME}|34=2|49=TW44|52={TIME}|56=ISLD|", (14, "34")),
    ("14g one", f"35=D|55=MSFT|34=3|49=TW44|52={TIME}|56=ISLD|11=id|21=3|40=1|54=1|60={TIME}|", (14, "34")),
    # 14h: a non-group tag repeated
    ("14h", f"35=D|{HDR}11=ID|21=1|40=1|40=2|54=1|38=200.00|55=INTC|60={TIME}|", (13, "40")),
    # 14i: NoTradingSessions says 3, two instances follow
    ("14i", f"35=D|{HDR}11=ID|21=1|40=1|54=1|38=200.00|55=INTC|386=3|336=PRE-OPEN|336=AFTER-HOURS|60={TIME}|",
     (16, "386")),
    # 15: the same order with header and body fields in another order
    ("15 a", f"35=D|{HDR}11=id|21=3|40=1|54=1|55=MSFT|60={TIME}|", None),
    ("15 b", f"35=D|49=TW44|34=3|56=ISLD|52={TIME}|40=1|55=MSFT|60={TIME}|54=1|21=3|11=id|", None),
    # 21: SecurityDefinition with NoSecurityAltID=0 and no instances
    ("21", f"35=d|34=2|49=TW44|56=ISLD|52={TIME}|320=JCD1091-20021011|322=1034356488676|323=6|55=TBS|22=8|"
           "167=CS|336=ONE_MAIN|58=No Products found for this Class Symbol|454=0|", None),
    # 2q: MsgType not in FIX 4.4
    ("2q", f"35=*|{HDR}", (11, None)),
    # 2r: an ExecutionReport is valid; the application rejects it as unsupported
    ("2r", f"35=8|{HDR}37=id|17=id|150=0|39=0|55=WLRI|54=1|151=100|14=0|6=0.0|", None),
    # RejectResentMessage: ExpireTime (UTCTIMESTAMP) given as a date
    ("RejectResent", f"35=D|34=2|43=Y|49=TW44|52={TIME}|56=ISLD|122={TIME}|11=ID|21=3|38=100|40=1|54=1|55=IVP|"
                     f"60={TIME}|126=20040415|", (6, "126")),
    # ReverseRoute: a bad OrdType with routing fields in the header
    ("ReverseRoute", f"35=D|{HDR}115=JCD|116=CS|144=CHI|11=ID|21=3|38=100|40=w|54=1|55=INTC|60={TIME}|",
     (5, "40")),
    # ReverseRouteWithEmptyRoutingTags: the empty header field wins, even over 40=w
    ("RREmpty 115", f"35=D|{HDR}115=|11=ID|21=3|38=100|40=1|54=1|55=INTC|60={TIME}|", (4, "115")),
    ("RREmpty 128", f"35=D|{HDR}128=|11=ID|21=3|38=100|40=1|54=1|55=INTC|60={TIME}|", (4, "128")),
    ("RREmpty 116", f"35=D|{HDR}115=JCD|116=|11=ID|21=3|38=100|40=1|54=1|55=INTC|60={TIME}|", (4, "116")),
    ("RREmpty 144", f"35=D|{HDR}115=JCD|116=CS|144=|11=ID|21=3|38=100|40=1|54=1|55=INTC|60={TIME}|", (4, "144")),
    ("RREmpty 145 over 40=w", f"35=D|{HDR}128=JCD|129=CS|145=|11=ID|21=3|38=100|40=w|54=1|55=INTC|60={TIME}|",
     (4, "145")),
]


@pytest.mark.parametrize(("name", "body", "expected"), SCRIPT_CASES, ids=[c[0] for c in SCRIPT_CASES])
def test_script_messages(name: str, body: str, expected: tuple[int, str | None] | None) -> None:
    assert check(body) == expected


def test_reject_texts_are_quickfix_wording() -> None:
    assert REJECT_TEXT[0] == "Invalid tag number"
    assert REJECT_TEXT[1] == "Required tag missing"
    assert REJECT_TEXT[2] == "Tag not defined for this message type"
    assert REJECT_TEXT[4] == "Tag specified without a value"
    assert REJECT_TEXT[5] == "Value is incorrect (out of range) for this tag"
    assert REJECT_TEXT[6] == "Incorrect data format for value"
    assert REJECT_TEXT[11] == "Invalid MsgType"
    assert REJECT_TEXT[13] == "Tag appears more than once"
    assert REJECT_TEXT[14] == "Tag specified out of required order"
    assert REJECT_TEXT[16] == "Incorrect NumInGroup count for repeating group"
    err = FixValidationError(5, "40")
    assert (err.reason, err.tag, err.text) == (5, "40", "Value is incorrect (out of range) for this tag")


# --------------------------------------------------------- several problems at once
PRECEDENCE = [
    # structure beats an unknown MsgType and everything after
    ("14 before 11", f"35=*|55=X|{HDR}", (14, "34")),
    # a body field after a trailer field is out of order (the body field is named)
    ("body after trailer", nos("93=4|89=abcd|58=late|"), (14, "58")),
    # MsgType beats missing required fields
    ("11 before 1", "35=*|34=2|49=TW44|52=" + TIME + "|", (11, None)),
    # required header beats required body and bad values
    ("1 header before 1 body", f"35=D|34=2|49=TW44|52={TIME}|40=x|", (1, "56")),
    ("1 before 5", nos(_11=None, _40="w"), (1, "11")),
    # required body fields: lowest tag first (QuickFIX keeps them in a std::set)
    ("1 lowest tag", f"35=D|{HDR}21=1|55=X|38=1|", (1, "11")),
    ("1 lowest of 40 54 60", f"35=D|{HDR}11=ID|21=1|55=X|", (1, "40")),
    ("1 before 0", nos("9999=x|", _60=None), (1, "60")),
    # header problems before body problems whatever the wire order
    ("4 header before 6 body", nos(_38="+1").replace("56=ISLD|", "56=|"), (4, "56")),
    # body in tag order: 21 (enum) before 999 (invalid tag), 44 (format) before 5000
    ("5 on 21 before 0 on 999", nos("999=x|", _21="9"), (5, "21")),
    ("6 on 44 before 0 on 5000", nos("5000=x|44=abc|"), (6, "44")),
    ("2 on 55 before 0 on 999", f"35=0|{HDR}999=x|55=X|", (2, "55")),
    ("0 on a large tag", f"35=0|{HDR}99999=x|", (0, "99999")),
    # within one field: empty, then format, then value
    ("4 before 6", nos(_38=""), (4, "38")),
    ("BOOLEAN X is a format error",
     f"35=D|34=2|43=X|49=TW44|52={TIME}|56=ISLD|11=ID|21=1|40=1|54=1|55=X|60={TIME}|", (6, "43")),
    ("a header field after the body is out of order first", nos("43=X|"), (14, "43")),
    ("CHAR with two characters", nos(_54="11"), (6, "54")),
    ("INT enum: 6 then 5", nos("201=x|"), (6, "201")),
    ("INT enum value", nos("201=7|"), (5, "201")),
    # repeated tags: the first instance is checked before the repeat is seen
    ("earlier tag wins over repeat", nos("40=2|", _21="9"), (5, "21")),
    ("first instance bad", f"35=D|{HDR}11=ID|21=1|40=w|40=1|54=1|55=X|60={TIME}|", (5, "40")),
    ("second instance bad", f"35=D|{HDR}11=ID|21=1|40=1|40=w|54=1|55=X|60={TIME}|", (13, "40")),
    ("repeated header field", f"35=0|34=2|49=TW44|49=TW44|52={TIME}|56=ISLD|", (13, "49")),
    # groups: the count is checked at the counter, then the members
    ("16 count", nos("453=2|448=A|447=D|452=1|"), (16, "453")),
    ("member format", nos("453=1|448=A|447=D|452=x|"), (6, "452")),
    ("16 before member", nos("453=2|448=A|447=D|452=x|"), (16, "453")),
    ("member empty", nos("453=1|448=A|447=|452=1|"), (4, "447")),
    ("counter format", nos("453=x|448=A|"), (6, "453")),
    ("counter '+1'", nos("453=+1|448=A|"), (6, "453")),
    ("member outside its group", nos("448=A|"), (2, "448")),
    ("non-member ends the group", nos("453=1|448=A|9999=B|447=D|"), (2, "447")),
    ("repeat of a member starts an instance", nos("453=1|448=A|447=D|447=P|"), (16, "453")),
    ("nested group count", nos("453=1|448=A|447=D|452=1|802=2|523=S|803=1|"), (16, "802")),
    ("required field before group problems", nos("386=2|336=X|", _11=None), (1, "11")),
    # known but undefined-here MsgType: header problems still come first
    ("unsupported type, bad header", f"35=V|34=2|49=TW44|52={TIME}|", (1, "56")),
    ("unsupported type, bad body field", f"35=V|{HDR}262=R|263=9x|999=1|", (0, "999")),
]


@pytest.mark.parametrize(("name", "body", "expected"), PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_precedence(name: str, body: str, expected: tuple[int, str | None] | None) -> None:
    assert check(body) == expected


def test_wire_order_does_not_change_the_verdict() -> None:
    # 999 (invalid tag) is on the wire before 21=9 (bad enum): QuickFIX iterates by tag.
    body = f"35=D|{HDR}999=x|11=ID|21=9|40=1|54=1|55=X|60={TIME}|"
    assert check(body) == (5, "21")


# ------------------------------------------------------------- other outcomes
def test_unsupported_version() -> None:
    with pytest.raises(UnsupportedVersion) as info:
        validate(parse(raw_message(f"35=0|{HDR}", begin="FIX.4.2")))
    assert info.value.begin_string == "FIX.4.2"


def test_known_but_undefined_message_type() -> None:
    # Known to FIX 4.4, not defined here: valid as far as it can be judged, for the
    # application to refuse with a BusinessMessageReject; '*' is not FIX at all.
    assert "V" in dd.MSG_TYPES and "V" not in dd.MESSAGES
    assert check(f"35=V|{HDR}262=R1|263=1|264=0|146=1|55=ES|") is None
    assert check(f"35=V|{HDR}262=R1|58=|") == (4, "58")
    assert check(f"35=*|{HDR}262=R1|") == (11, None)
    assert issubclass(GarbledMessage, FixMessageError) and issubclass(UnsupportedVersion, FixMessageError)


@pytest.mark.parametrize("bad", ["abc=1|", "=1|", "+1=2|", "garbled|"])
def test_garbled_fields(bad: str) -> None:
    with pytest.raises(GarbledMessage):
        validate(parse(raw_message(f"35=0|{HDR}{bad}")))


def test_first_three_fields_out_of_order_is_garbled() -> None:
    raw = raw_message(f"34=3|35=0|49=TW44|52={TIME}|56=ISLD|")
    with pytest.raises(GarbledMessage):
        validate(parse(raw))


def test_negative_tag_without_value() -> None:
    assert check(f"35=0|{HDR}-1=|") == (4, "-1")


def test_header_group_count() -> None:
    # QuickFIX does not count header groups; FIX says a wrong NumInGroup is a reject.
    assert check(f"35=0|{HDR}627=2|628=HOP1|") == (16, "627")
    assert check(f"35=0|{HDR}627=1|628=HOP1|629={TIME}|630=3|") is None


# ------------------------------------------------------------- valid messages
PARTIES = "453=2|448=BRKR|447=D|452=1|802=1|523=DESK1|803=25|448=TRDR7|447=D|452=12|"
OPTION = ("55=SPX|48=SPXW261218C07000000|22=8|454=1|455=US0000000001|456=4|460=5|461=OCEIXS|167=OPT|"
          "200=202612|541=20261218|201=1|202=7000|947=USD|231=100|207=XCBO|")
VALID = [
    ("Heartbeat", f"35=0|{HDR}"),
    ("Heartbeat TestReqID", f"35=0|{HDR}112=HELLO|"),
    ("TestRequest", f"35=1|{HDR}112=HELLO|"),
    ("ResendRequest", f"35=2|{HDR}7=2|16=0|"),
    ("Reject", f"35=3|{HDR}45=2|58=Invalid tag number|371=999|372=0|373=0|"),
    ("SequenceReset", f"35=4|{HDR}123=Y|36=5|"),
    ("Logout", f"35=5|{HDR}58=bye|"),
    ("Logon", f"35=A|{HDR}98=0|108=30|141=Y|789=7|383=8192|384=2|372=D|385=S|372=8|385=R|464=N|553=u|554=p|"),
    ("Logon header extras", f"35=A|34=1|43=N|49=TW44|50=SUB|52={TIME}.123|56=ISLD|57=T|97=N|122={TIME}|"
                            f"369=0|627=2|628=HOP1|629={TIME}|630=5|628=HOP2|98=0|108=30|"),
    ("NewOrderSingle", nos(f"1=ACC|{PARTIES}78=2|79=A1|80=100|539=1|524=X|525=D|538=3|79=A2|80=100|"
                           "386=2|336=PRE|625=S|336=POST|18=1 2 G|59=6|432=20240416|126=20240416-20:00:00|"
                           "528=A|529=1 A|110=50|44=12.5|99=12.25|15=USD|847=1|")),
    ("OrderCancelRequest", f"35=F|{HDR}41=ID|11=ID2|55=INTC|54=1|60={TIME}|38=100|"),
    ("OrderCancelReplaceRequest", f"35=G|{HDR}41=ID|11=ID2|21=1|55=INTC|54=1|60={TIME}|38=150|40=2|44=10.5|"),
    ("ExecutionReport fill, option, parties",
     f"35=8|{HDR}37=O1|198=S1|11=C1|17=E1|150=F|39=1|1=ACC|660=99|581=1|{PARTIES}{OPTION}54=1|38=10|40=2|"
     f"44=12.5|59=0|32=5|31=12.50|30=XCBO|151=5|14=5|6=12.5|75=20240415|60={TIME}.123|12=1.25|13=3|"
     "382=1|375=CB|437=5|136=1|137=0.5|138=USD|139=4|851=2|442=1|77=O|58=fill|"),
    ("ExecutionReport trade correct", f"35=8|{HDR}37=O1|17=E2|19=E1|150=G|39=2|55=ES|167=FUT|200=202612|54=2|"
                                      "151=0|14=10|6=5000.25|31=5000.25|32=10|"),
    ("ExecutionReport legs and underlyings",
     f"35=8|{HDR}37=O1|17=E3|150=0|39=0|55=SPX-SPRD|167=MLEG|54=1|151=1|14=0|6=0|"
     "711=1|311=SPX|310=IND|315=1|555=2|600=SPXW A|609=OPT|612=7000|624=1|687=1|"
     "539=1|524=MM|538=3|600=SPXW B|609=OPT|612=7100|624=2|687=1|"),
    ("ExecutionReport ExecType L", f"35=8|{HDR}37=O1|17=E4|150=L|39=0|55=ES|54=1|151=1|14=0|6=0|"),
    ("OrderCancelReject", f"35=9|{HDR}37=O1|11=ID2|41=ID|39=0|434=1|102=1|58=too late|"),
    ("BusinessMessageReject", f"35=j|{HDR}45=2|372=8|380=3|58=Unsupported Message Type|"),
    ("SecurityDefinition", f"35=d|{HDR}320=R1|322=S1|323=1|{OPTION}668=1|870=1|871=1|872=Y|15=USD|"
                           "555=1|600=SPX|609=IND|827=0|561=1|562=1|"),
]


@pytest.mark.parametrize(("name", "body"), VALID, ids=[c[0] for c in VALID])
def test_valid_messages(name: str, body: str) -> None:
    assert check(body) is None


def test_every_defined_message_type_is_exercised() -> None:
    bodies = [b for _, b in VALID] + [c[1] for c in SCRIPT_CASES if c[2] is None]
    seen = {b.split("|", 1)[0][3:] for b in bodies}
    assert seen == set(dd.MESSAGES)


# ------------------------------------------------------------- formats
FORMAT_CASES = [
    # (field in a NewOrderSingle body, good values, bad values)
    ("38", ["1", "1.5", "-1.5", ".5", "1.", "002000.00", "0"], ["+1", "1e5", " 1", "1.2.3", ".", "-", "nan", "1,5"]),
    ("60", [TIME, TIME + ".123", TIME + ".123456", TIME + ".123456789", "20240229-23:59:60"],
     ["20240415", "20240415-1:45:01", "20241315-13:45:01", "20240432-13:45:01", "20240415-24:00:00",
      "20240415-13:60:00", TIME + ".1", TIME + ".1234", "20240415 13:45:01"]),
    ("432", ["20240415"], ["2024041", "20241301", "20240400", "2024-04-15"]),
    ("206", ["A"], ["AB"]),
    ("200", ["202612", "20261218", "202612w2"], ["2026", "202613", "202612w6", "2026121"]),
    ("110", ["0", "10"], ["ten", "1 0"]),
]


@pytest.mark.parametrize(("tag", "good", "bad"), FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_field_formats(tag: str, good: list[str], bad: list[str]) -> None:
    def body(value: str) -> str:  # replace the order's own field, or add the field
        return nos(**{"_" + tag: value}) if tag in ("38", "60") else nos(f"{tag}={value}|")

    for value in good:
        assert check(body(value)) is None, value
    for value in bad:
        assert check(body(value)) == (6, tag), value


def test_integer_formats() -> None:
    assert check(f"35=A|{HDR}98=0|108=-1|") is None  # INT allows a sign; the session judges the value
    assert check(f"35=A|{HDR}98=0|108=+30|") == (6, "108")
    assert check(f"35=A|{HDR}98=0|108=3.0|") == (6, "108")
    assert check(f"35=0|34=x|49=TW44|52={TIME}|56=ISLD|") == (6, "34")


def test_multiple_value_string_items() -> None:
    assert check(nos("18=1 2 G|")) is None
    assert check(nos("18=1 T|")) == (5, "18")
    assert check(nos("18=1  2|")) == (5, "18")  # an empty item between two spaces


def test_format_checks_of_types_no_layout_uses() -> None:
    fmt = v._FORMAT
    assert fmt["UTCTIMEONLY"](b"13:45:01") and fmt["UTCTIMEONLY"](b"13:45:01.123")
    assert not fmt["UTCTIMEONLY"](b"25:00:00") and not fmt["UTCTIMEONLY"](b"13:45")
    assert fmt["UTCDATEONLY"](b"20240415") and not fmt["UTCDATEONLY"](b"20240431x")
    assert fmt["DAYOFMONTH"](b"31") and fmt["DAYOFMONTH"](b"1") and not fmt["DAYOFMONTH"](b"32")
    assert fmt["TZTIMEONLY"](b"07:39Z") and fmt["TZTIMEONLY"](b"02:39:00-05") and fmt["TZTIMEONLY"](b"15:39+08:00")
    assert not fmt["TZTIMEONLY"](b"7:39Z")
    assert fmt["TZTIMESTAMP"](b"20060901-07:39Z") and fmt["TZTIMESTAMP"](b"20060901-02:39:00-05")
    assert not fmt["TZTIMESTAMP"](b"20060901T07:39Z")
    assert fmt["TAGNUM"](b"55") and fmt["SEQNUM"](b"7") and fmt["LENGTH"](b"0")


# ------------------------------------------------------------- reverse route
def _route(body: str) -> list[tuple[int, bytes]]:
    return reverse_route_fields(parse(raw_message(body)))


def test_reverse_route() -> None:
    assert _route(nos("115=JCD|")) == [(128, b"JCD")]
    assert _route(nos("128=JCD|")) == [(115, b"JCD")]
    assert _route(nos("115=JCD|116=CS|144=CHI|")) == [(128, b"JCD"), (129, b"CS"), (145, b"CHI")]
    assert _route(nos("128=JCD|129=CS|145=CHI|")) == [(115, b"JCD"), (116, b"CS"), (144, b"CHI")]
    assert _route(nos()) == []


def test_reverse_route_skips_empty_fields() -> None:
    assert _route(nos("115=|")) == []
    assert _route(nos("115=JCD|116=|")) == [(128, b"JCD")]
    assert _route(nos("128=JCD|129=CS|145=|")) == [(115, b"JCD"), (116, b"CS")]


# ------------------------------------------------------------- dictionary
def test_dictionary_enums() -> None:
    values = {tag: dd.FIELDS[tag].values for tag in dd.FIELDS}
    assert values[21] == {"1", "2", "3"}
    assert values[54] >= {"1", "2", "5", "6", "8", "B", "G"} and "H" not in values[54]
    assert values[59] == {str(i) for i in range(8)}
    assert values[39] == set("012346789ABCDE")
    assert values[150] == set("03456789ABCDEFGHIL")
    assert values[40] >= set("1234P") and "w" not in values[40]
    assert {"CS", "FUT", "OPT", "MLEG", "CORP"} <= values[167] and "BOO" not in values[167]
    assert values[201] == {"0", "1"}
    assert values[43] == values[97] == values[123] == values[141] == {"Y", "N"}
    assert values[98] == {str(i) for i in range(7)}
    assert values[373] == {str(i) for i in range(18)} | {"99"}
    assert values[380] == {str(i) for i in range(8)}
    assert values[447] is None and values[452] is None
    assert dd.FIELDS[35].values == set(dd.MSG_TYPES)


def test_dictionary_types_and_layouts() -> None:
    types = {tag: fd.type for tag, fd in dd.FIELDS.items()}
    assert {types[t] for t in (38, 14, 151, 32)} == {"QTY"} and types[6] == types[31] == types[44] == "PRICE"
    assert types[52] == types[60] == types[126] == "UTCTIMESTAMP" and types[75] == "LOCALMKTDATE"
    assert types[200] == "MONTHYEAR" and types[18] == "MULTIPLEVALUESTRING" and types[453] == "NUMINGROUP"
    assert set(types.values()) <= dd.TYPES
    assert len(dd.MSG_TYPES) == 93 and "*" not in dd.MSG_TYPES
    er = dd.MESSAGES["8"]
    assert (er.name, er.category) == ("ExecutionReport", "app")
    assert {m: d.category for m, d in dd.MESSAGES.items() if d.category == "admin"}.keys() == set("012345A")
    top = {it.tag if isinstance(it, dd.FieldRef) else it.counter for it in er.items}
    assert {37, 198, 526, 11, 41, 17, 19, 150, 39, 636, 103, 378, 1, 660, 581, 54, 38, 40, 44, 99, 59, 126, 18,
            110, 589, 590, 591, 32, 31, 151, 14, 6, 60, 75, 113, 58, 354, 355, 851, 528, 529, 381, 453, 454,
            555, 711, 136, 382, 518} <= top
    assert not {20, 109, 880, 70, 386} & top  # not ExecutionReport fields in FIX 4.4
    parties = next(it for it in er.items if isinstance(it, dd.GroupDef) and it.counter == 453)
    assert parties.delimiter == 448 and parties.items[-1].counter == 802  # type: ignore[union-attr]
    req = sorted(it.tag for it in er.items if isinstance(it, dd.FieldRef) and it.required)
    assert req == [6, 14, 17, 37, 39, 54, 150, 151]
    assert sorted(it.tag for it in dd.MESSAGES["D"].items if isinstance(it, dd.FieldRef) and it.required) == \
        [11, 40, 54, 60]
    assert dd.field_name(55) == "Symbol" and dd.field_name(99999) == "99999"


def test_fields_outside_the_layout_are_tag_not_defined() -> None:
    # 20 ExecTransType and 109 ClientID were dropped from the ExecutionReport in FIX 4.4
    er = f"35=8|{HDR}37=O|17=E|150=0|39=0|55=X|54=1|151=1|14=0|6=0|"
    assert check(er + "20=0|") == (2, "20")
    assert check(er + "109=C|") == (2, "109")
    assert check(er + "101=1|") == (0, "101")  # a number FIX 4.4 never assigned


# ------------------------------------------------------------- fast pass == exact pass
def _outcome(raw: bytes) -> tuple[str, int | None, str | None]:
    try:
        validate(parse(raw))
    except FixValidationError as e:
        return "reject", e.reason, e.tag
    except (UnsupportedVersion, GarbledMessage) as e:
        return type(e).__name__, None, None
    return "ok", None, None


def _mutate(rng: random.Random, body: str) -> str:
    fields = [f for f in body.split("|") if f]
    head, rest = fields[:1], fields[1:]
    op = rng.randrange(7)
    i = rng.randrange(len(rest))
    if op == 0:
        del rest[i]
    elif op == 1:
        rest.insert(rng.randrange(len(rest) + 1), rest[i])
    elif op == 2:
        j = rng.randrange(len(rest))
        rest[i], rest[j] = rest[j], rest[i]
    elif op == 3:
        tag = rest[i].split("=")[0]
        rest[i] = f"{tag}={rng.choice(['', 'x', '+1', '1.5', '-1', '0', 'Y', 'ZZZ', '20240101', '3'])}"
    elif op == 4:
        rest.insert(rng.randrange(len(rest) + 1), f"{rng.choice([55, 999, 5001, 448, 336, 453, 115, 10, 93])}=1")
    elif op == 5:
        head = [rng.choice(["35=8", "35=D", "35=V", "35=*", "35=0"])]
    else:
        rest = rest[i:] + rest[:i]
    return "|".join(head + rest) + "|"


def test_fast_pass_agrees_with_exact_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20240415)
    bases = [b for _, b in VALID] + [c[1] for c in SCRIPT_CASES]
    cases = []
    for _ in range(4000):
        body = rng.choice(bases)
        for _ in range(rng.randrange(1, 4)):
            body = _mutate(rng, body)
        cases.append(raw_message(body))
    with_fast = [_outcome(raw) for raw in cases]
    monkeypatch.setattr(v, "_FAST", {})  # every message through the exact pass
    exact = [_outcome(raw) for raw in cases]
    mismatches = [(raw, a, b) for raw, a, b in zip(cases, with_fast, exact) if a != b]
    assert not mismatches, mismatches[:3]
    assert sum(o[0] == "ok" for o in exact) > 200  # the mutations leave many valid messages
    assert len({o for o in exact if o[0] == "reject"}) > 40


def test_byte_level_damage_never_escapes_as_another_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    bases = [raw_message(b) for _, b in VALID]
    cases = []
    for _ in range(3000):
        raw = bytearray(rng.choice(bases))
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(len(raw) - 1)  # keep the final SOH
            raw[pos] = rng.choice(b"=\x01-0123456789AZaz .+")
        cases.append(bytes(raw))
    with_fast = [_outcome(raw) for raw in cases]  # any other exception fails the test
    monkeypatch.setattr(v, "_FAST", {})
    assert with_fast == [_outcome(raw) for raw in cases]


# ------------------------------------------------------------- timing (no assert)
def test_timing_sanity(capsys: pytest.CaptureFixture[str]) -> None:
    body = (f"35=8|34=1234|49=OMS|52={TIME}.123|56=RISKD|37=O1|11=C1|17=E1|150=F|39=1|1=ACC1|55=ES|167=FUT|"
            f"200=202612|54=1|38=10|40=2|44=5012.25|59=0|32=5|31=5012.25|151=5|14=5|6=5012.25|60={TIME}.123|"
            "75=20240415|30=XCME|")
    msg = parse(raw_message(body))
    assert len(msg.fields) == 30
    validate(msg)
    n, best = 2000, float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            validate(msg)
        best = min(best, (time.perf_counter() - t0) / n)
    with capsys.disabled():
        print(f"\nvalidate(): {best * 1e6:.1f} us per 30-field ExecutionReport")
