"""The FIX 4.4 data dictionary riskd's engine validates against, as Python data.

Written for this project from the FIX 4.4 specification (with errata); where the
specification and QuickFIX's ``FIX44.xml`` differ on what a *receiver* must accept,
the choice is noted beside the data.  What it holds:

* `FIELDS`: tag -> `FieldDef` (name, FIX 4.4 type, enumerated values or None) for
  every field of the standard header and trailer, of the messages defined below and
  of the components they use, plus a few common FIX 4.4 fields seen in drop copies.
* `FIX44_TAGS`: every tag number FIX 4.4 defines (1-956 less 101, 261 and 809).  A tag in this set but absent from a message's definition is
  "not defined for this message type"; a tag outside it is an "invalid tag number".
* `MSG_TYPES`: every FIX 4.4 MsgType and its name, so that an unknown MsgType can be
  told from a known one this dictionary does not define.
* `HEADER`, `TRAILER` and `MESSAGES`: layouts as trees of `FieldRef` / `GroupDef`
  items, components flattened in.  Defined: the admin messages 0 1 2 3 4 5 A and the
  application messages D F G 8 9 j d.

Layouts are written in a small notation compiled at import (see `_compile`):
``11!`` a field (``!``: required), ``@Parties`` a component spliced in (``@X!``:
required component, whose ``!`` fields then become required, as QuickFIX loads
them), ``{453 448 447 452 {802 523 803}}`` a repeating group: counter tag first
(``{453! ...}``: required group), then its members; the first member is the
delimiter.  As in QuickFIX, a member's ``!`` counts only in a required group.
"""

from __future__ import annotations

from typing import NamedTuple, Union

__all__ = [
    "BEGIN_STRING", "TYPES", "FieldDef", "FieldRef", "GroupDef", "MessageDef", "Item",
    "FIELDS", "FIX44_TAGS", "MSG_TYPES", "COMPONENTS", "HEADER", "TRAILER", "MESSAGES",
    "field_name",
]

BEGIN_STRING = "FIX.4.4"

#: The FIX 4.4 data types.  Some (TAGNUM, the TZ and UTC time/date-only types,
#: MULTIPLECHARVALUE, XMLDATA, LANGUAGE) type no field defined here; validation
#: checks them all the same.
TYPES = frozenset(
    "INT LENGTH SEQNUM NUMINGROUP TAGNUM DAYOFMONTH FLOAT QTY PRICE PRICEOFFSET AMT "
    "PERCENTAGE CHAR BOOLEAN STRING MULTIPLEVALUESTRING MULTIPLECHARVALUE COUNTRY "
    "CURRENCY EXCHANGE MONTHYEAR UTCTIMESTAMP UTCTIMEONLY UTCDATEONLY LOCALMKTDATE "
    "TZTIMEONLY TZTIMESTAMP DATA XMLDATA LANGUAGE".split())


class FieldDef(NamedTuple):
    """One field: its name, FIX 4.4 type and allowed values (None: any value)."""

    name: str
    type: str
    values: frozenset[str] | None


class FieldRef(NamedTuple):
    """A field's place in a message, group or header layout."""

    tag: int
    required: bool


class GroupDef(NamedTuple):
    """A repeating group: NumInGroup counter tag, delimiter (first member) and members."""

    counter: int
    required: bool
    delimiter: int
    items: tuple[Item, ...]


Item = Union[FieldRef, GroupDef]


class MessageDef(NamedTuple):
    """A message type: name, category ('admin' or 'app') and body layout."""

    msg_type: str
    name: str
    category: str
    items: tuple[Item, ...]


# --------------------------------------------------------------------- fields
# "tag Name TYPE", separated by ";".  Types follow the FIX 4.4 specification.
# Deliberate differences from QuickFIX's FIX44.xml: MiscFeeType (139) is STRING,
# because its values run to "12" (FIX44.xml says CHAR, which rejects 10-12), and
# (Underlying/Leg)RepoCollateralSecurityType (239, 243, 250) are STRING as in the
# specification (FIX44.xml: INT).
_FIELD_TABLE = """
1 Account STRING; 6 AvgPx PRICE; 7 BeginSeqNo SEQNUM; 8 BeginString STRING; 9 BodyLength LENGTH;
10 CheckSum STRING; 11 ClOrdID STRING; 12 Commission AMT; 13 CommType CHAR; 14 CumQty QTY;
15 Currency CURRENCY; 16 EndSeqNo SEQNUM; 17 ExecID STRING; 18 ExecInst MULTIPLEVALUESTRING;
19 ExecRefID STRING; 20 ExecTransType CHAR; 21 HandlInst CHAR; 22 SecurityIDSource STRING;
23 IOIID STRING; 29 LastCapacity CHAR; 30 LastMkt EXCHANGE; 31 LastPx PRICE; 32 LastQty QTY;
34 MsgSeqNum SEQNUM; 35 MsgType STRING; 36 NewSeqNo SEQNUM; 37 OrderID STRING; 38 OrderQty QTY;
39 OrdStatus CHAR; 40 OrdType CHAR; 41 OrigClOrdID STRING; 43 PossDupFlag BOOLEAN; 44 Price PRICE;
45 RefSeqNum SEQNUM; 48 SecurityID STRING; 49 SenderCompID STRING; 50 SenderSubID STRING;
52 SendingTime UTCTIMESTAMP; 54 Side CHAR; 55 Symbol STRING; 56 TargetCompID STRING;
57 TargetSubID STRING; 58 Text STRING; 59 TimeInForce CHAR; 60 TransactTime UTCTIMESTAMP;
63 SettlType CHAR; 64 SettlDate LOCALMKTDATE; 65 SymbolSfx STRING; 66 ListID STRING;
70 AllocID STRING; 75 TradeDate LOCALMKTDATE; 76 ExecBroker STRING; 77 PositionEffect CHAR;
78 NoAllocs NUMINGROUP; 79 AllocAccount STRING; 80 AllocQty QTY; 81 ProcessCode CHAR;
89 Signature DATA; 90 SecureDataLen LENGTH; 91 SecureData DATA; 93 SignatureLength LENGTH;
95 RawDataLength LENGTH; 96 RawData DATA; 97 PossResend BOOLEAN; 98 EncryptMethod INT;
99 StopPx PRICE; 100 ExDestination EXCHANGE; 102 CxlRejReason INT; 103 OrdRejReason INT;
106 Issuer STRING; 107 SecurityDesc STRING; 108 HeartBtInt INT; 109 ClientID STRING;
110 MinQty QTY; 111 MaxFloor QTY; 112 TestReqID STRING; 113 ReportToExch BOOLEAN;
114 LocateReqd BOOLEAN; 115 OnBehalfOfCompID STRING; 116 OnBehalfOfSubID STRING; 117 QuoteID STRING;
118 NetMoney AMT; 119 SettlCurrAmt AMT; 120 SettlCurrency CURRENCY; 121 ForexReq BOOLEAN;
122 OrigSendingTime UTCTIMESTAMP; 123 GapFillFlag BOOLEAN; 126 ExpireTime UTCTIMESTAMP;
128 DeliverToCompID STRING; 129 DeliverToSubID STRING; 136 NoMiscFees NUMINGROUP; 137 MiscFeeAmt AMT;
138 MiscFeeCurr CURRENCY; 139 MiscFeeType STRING; 140 PrevClosePx PRICE; 141 ResetSeqNumFlag BOOLEAN;
142 SenderLocationID STRING; 143 TargetLocationID STRING; 144 OnBehalfOfLocationID STRING;
145 DeliverToLocationID STRING; 150 ExecType CHAR; 151 LeavesQty QTY; 152 CashOrderQty QTY;
155 SettlCurrFxRate FLOAT; 156 SettlCurrFxRateCalc CHAR; 157 NumDaysInterest INT;
158 AccruedInterestRate PERCENTAGE; 159 AccruedInterestAmt AMT; 167 SecurityType STRING;
168 EffectiveTime UTCTIMESTAMP; 192 OrderQty2 QTY; 193 SettlDate2 LOCALMKTDATE; 194 LastSpotRate PRICE;
195 LastForwardPoints PRICEOFFSET; 198 SecondaryOrderID STRING; 200 MaturityMonthYear MONTHYEAR;
201 PutOrCall INT; 202 StrikePrice PRICE; 203 CoveredOrUncovered INT; 206 OptAttribute CHAR;
207 SecurityExchange EXCHANGE; 210 MaxShow QTY; 211 PegOffsetValue FLOAT; 212 XmlDataLen LENGTH;
213 XmlData DATA; 218 Spread PRICEOFFSET; 220 BenchmarkCurveCurrency CURRENCY;
221 BenchmarkCurveName STRING; 222 BenchmarkCurvePoint STRING; 223 CouponRate PERCENTAGE;
224 CouponPaymentDate LOCALMKTDATE; 225 IssueDate LOCALMKTDATE; 226 RepurchaseTerm INT;
227 RepurchaseRate PERCENTAGE; 228 Factor FLOAT; 229 TradeOriginationDate LOCALMKTDATE;
230 ExDate LOCALMKTDATE; 231 ContractMultiplier FLOAT; 232 NoStipulations NUMINGROUP;
233 StipulationType STRING; 234 StipulationValue STRING; 235 YieldType STRING; 236 Yield PERCENTAGE;
237 TotalTakedown AMT; 238 Concession AMT; 239 RepoCollateralSecurityType STRING;
240 RedemptionDate LOCALMKTDATE; 241 UnderlyingCouponPaymentDate LOCALMKTDATE;
242 UnderlyingIssueDate LOCALMKTDATE; 243 UnderlyingRepoCollateralSecurityType STRING;
244 UnderlyingRepurchaseTerm INT; 245 UnderlyingRepurchaseRate PERCENTAGE; 246 UnderlyingFactor FLOAT;
247 UnderlyingRedemptionDate LOCALMKTDATE; 248 LegCouponPaymentDate LOCALMKTDATE;
249 LegIssueDate LOCALMKTDATE; 250 LegRepoCollateralSecurityType STRING; 251 LegRepurchaseTerm INT;
252 LegRepurchaseRate PERCENTAGE; 253 LegFactor FLOAT; 254 LegRedemptionDate LOCALMKTDATE;
255 CreditRating STRING; 256 UnderlyingCreditRating STRING; 257 LegCreditRating STRING;
258 TradedFlatSwitch BOOLEAN; 259 BasisFeatureDate LOCALMKTDATE; 260 BasisFeaturePrice PRICE;
305 UnderlyingSecurityIDSource STRING; 306 UnderlyingIssuer STRING; 307 UnderlyingSecurityDesc STRING;
308 UnderlyingSecurityExchange EXCHANGE; 309 UnderlyingSecurityID STRING;
310 UnderlyingSecurityType STRING; 311 UnderlyingSymbol STRING; 312 UnderlyingSymbolSfx STRING;
313 UnderlyingMaturityMonthYear MONTHYEAR; 315 UnderlyingPutOrCall INT;
316 UnderlyingStrikePrice PRICE; 317 UnderlyingOptAttribute CHAR; 318 UnderlyingCurrency CURRENCY;
320 SecurityReqID STRING; 322 SecurityResponseID STRING; 323 SecurityResponseType INT;
336 TradingSessionID STRING; 337 ContraTrader STRING; 347 MessageEncoding STRING;
348 EncodedIssuerLen LENGTH; 349 EncodedIssuer DATA; 350 EncodedSecurityDescLen LENGTH;
351 EncodedSecurityDesc DATA; 354 EncodedTextLen LENGTH; 355 EncodedText DATA;
362 EncodedUnderlyingIssuerLen LENGTH; 363 EncodedUnderlyingIssuer DATA;
364 EncodedUnderlyingSecurityDescLen LENGTH; 365 EncodedUnderlyingSecurityDesc DATA;
369 LastMsgSeqNumProcessed SEQNUM; 370 OnBehalfOfSendingTime UTCTIMESTAMP; 371 RefTagID INT; 372 RefMsgType STRING;
373 SessionRejectReason INT; 375 ContraBroker STRING; 376 ComplianceID STRING;
377 SolicitedFlag BOOLEAN; 378 ExecRestatementReason INT; 379 BusinessRejectRefID STRING;
380 BusinessRejectReason INT; 381 GrossTradeAmt AMT; 382 NoContraBrokers NUMINGROUP;
383 MaxMessageSize LENGTH; 384 NoMsgTypes NUMINGROUP; 385 MsgDirection CHAR;
386 NoTradingSessions NUMINGROUP; 388 DiscretionInst CHAR; 389 DiscretionOffsetValue FLOAT;
423 PriceType INT; 424 DayOrderQty QTY; 425 DayCumQty QTY; 426 DayAvgPx PRICE; 427 GTBookingInst INT;
432 ExpireDate LOCALMKTDATE; 434 CxlRejResponseTo CHAR; 435 UnderlyingCouponRate PERCENTAGE;
436 UnderlyingContractMultiplier FLOAT; 437 ContraTradeQty QTY; 438 ContraTradeTime UTCTIMESTAMP;
442 MultiLegReportingType CHAR; 447 PartyIDSource CHAR; 448 PartyID STRING; 452 PartyRole INT;
453 NoPartyIDs NUMINGROUP; 454 NoSecurityAltID NUMINGROUP; 455 SecurityAltID STRING;
456 SecurityAltIDSource STRING; 457 NoUnderlyingSecurityAltID NUMINGROUP;
458 UnderlyingSecurityAltID STRING; 459 UnderlyingSecurityAltIDSource STRING; 460 Product INT;
461 CFICode STRING; 462 UnderlyingProduct INT; 463 UnderlyingCFICode STRING;
464 TestMessageIndicator BOOLEAN; 467 IndividualAllocID STRING; 468 RoundingDirection CHAR;
469 RoundingModulus FLOAT; 470 CountryOfIssue COUNTRY; 471 StateOrProvinceOfIssue STRING;
472 LocaleOfIssue STRING; 479 CommCurrency CURRENCY; 480 CancellationRights CHAR;
481 MoneyLaunderingStatus CHAR; 483 TransBkdTime UTCTIMESTAMP; 484 ExecPriceType CHAR;
485 ExecPriceAdjustment FLOAT; 494 Designation STRING; 497 FundRenewWaiv CHAR; 513 RegistID STRING;
515 ExecValuationPoint UTCTIMESTAMP; 516 OrderPercent PERCENTAGE; 518 NoContAmts NUMINGROUP;
519 ContAmtType INT; 520 ContAmtValue FLOAT; 521 ContAmtCurr CURRENCY; 523 PartySubID STRING;
524 NestedPartyID STRING; 525 NestedPartyIDSource CHAR; 526 SecondaryClOrdID STRING;
527 SecondaryExecID STRING; 528 OrderCapacity CHAR; 529 OrderRestrictions MULTIPLEVALUESTRING;
538 NestedPartyRole INT; 539 NoNestedPartyIDs NUMINGROUP; 541 MaturityDate LOCALMKTDATE;
542 UnderlyingMaturityDate LOCALMKTDATE; 543 InstrRegistry STRING; 544 CashMargin CHAR;
545 NestedPartySubID STRING; 548 CrossID STRING; 549 CrossType INT; 551 OrigCrossID STRING;
553 Username STRING; 554 Password STRING; 555 NoLegs NUMINGROUP; 556 LegCurrency CURRENCY;
561 RoundLot QTY; 562 MinTradeVol QTY; 564 LegPositionEffect CHAR; 565 LegCoveredOrUncovered INT;
566 LegPrice PRICE; 581 AccountType INT; 582 CustOrderCapacity INT; 583 ClOrdLinkID STRING;
584 MassStatusReqID STRING; 586 OrigOrdModTime UTCTIMESTAMP; 587 LegSettlType CHAR;
588 LegSettlDate LOCALMKTDATE; 589 DayBookingInst CHAR; 590 BookingUnit CHAR; 591 PreallocMethod CHAR;
592 UnderlyingCountryOfIssue COUNTRY; 593 UnderlyingStateOrProvinceOfIssue STRING;
594 UnderlyingLocaleOfIssue STRING; 595 UnderlyingInstrRegistry STRING; 596 LegCountryOfIssue COUNTRY;
597 LegStateOrProvinceOfIssue STRING; 598 LegLocaleOfIssue STRING; 599 LegInstrRegistry STRING;
600 LegSymbol STRING; 601 LegSymbolSfx STRING; 602 LegSecurityID STRING; 603 LegSecurityIDSource STRING;
604 NoLegSecurityAltID NUMINGROUP; 605 LegSecurityAltID STRING; 606 LegSecurityAltIDSource STRING;
607 LegProduct INT; 608 LegCFICode STRING; 609 LegSecurityType STRING;
610 LegMaturityMonthYear MONTHYEAR; 611 LegMaturityDate LOCALMKTDATE; 612 LegStrikePrice PRICE;
613 LegOptAttribute CHAR; 614 LegContractMultiplier FLOAT; 615 LegCouponRate PERCENTAGE;
616 LegSecurityExchange EXCHANGE; 617 LegIssuer STRING; 618 EncodedLegIssuerLen LENGTH;
619 EncodedLegIssuer DATA; 620 LegSecurityDesc STRING; 621 EncodedLegSecurityDescLen LENGTH;
622 EncodedLegSecurityDesc DATA; 623 LegRatioQty FLOAT; 624 LegSide CHAR;
625 TradingSessionSubID STRING; 627 NoHops NUMINGROUP; 628 HopCompID STRING;
629 HopSendingTime UTCTIMESTAMP; 630 HopRefID SEQNUM; 635 ClearingFeeIndicator STRING;
636 WorkingIndicator BOOLEAN; 637 LegLastPx PRICE; 638 PriorityIndicator INT;
639 PriceImprovement PRICEOFFSET; 640 Price2 PRICE; 641 LastForwardPoints2 PRICEOFFSET;
651 UnderlyingLastPx PRICE; 652 UnderlyingLastQty QTY; 654 LegRefID STRING; 655 ContraLegRefID STRING;
660 AcctIDSource INT; 661 AllocAcctIDSource INT; 662 BenchmarkPrice PRICE; 663 BenchmarkPriceType INT;
667 ContractSettlMonth MONTHYEAR; 668 DeliveryForm INT; 669 LastParPx PRICE;
683 NoLegStipulations NUMINGROUP; 687 LegQty QTY; 688 LegStipulationType STRING;
689 LegStipulationValue STRING; 690 LegSwapType INT; 691 Pool STRING; 693 QuoteRespID STRING;
696 YieldRedemptionDate LOCALMKTDATE; 697 YieldRedemptionPrice PRICE; 698 YieldRedemptionPriceType INT;
699 BenchmarkSecurityID STRING; 701 YieldCalcDate LOCALMKTDATE; 711 NoUnderlyings NUMINGROUP;
736 AllocSettlCurrency CURRENCY; 738 InterestAtMaturity AMT; 739 LegDatedDate LOCALMKTDATE;
740 LegPool STRING; 761 BenchmarkSecurityIDSource STRING; 762 SecuritySubType STRING;
763 UnderlyingSecuritySubType STRING; 764 LegSecuritySubType STRING; 775 BookingType INT;
788 TerminationType INT; 789 NextExpectedMsgSeqNum SEQNUM; 790 OrdStatusReqID STRING;
797 CopyMsgIndicator BOOLEAN; 802 NoPartySubIDs NUMINGROUP; 803 PartySubIDType INT;
804 NoNestedPartySubIDs NUMINGROUP; 805 NestedPartySubIDType INT; 810 UnderlyingPx PRICE;
827 ExpirationCycle INT; 835 PegMoveType INT; 836 PegOffsetType INT; 837 PegLimitType INT;
838 PegRoundDirection INT; 839 PeggedPrice PRICE; 840 PegScope INT; 841 DiscretionMoveType INT;
842 DiscretionOffsetType INT; 843 DiscretionLimitType INT; 844 DiscretionRoundDirection INT;
845 DiscretionPrice PRICE; 846 DiscretionScope INT; 847 TargetStrategy INT;
848 TargetStrategyParameters STRING; 849 ParticipationRate PERCENTAGE;
850 TargetStrategyPerformance FLOAT; 851 LastLiquidityInd INT; 854 QtyType INT; 864 NoEvents NUMINGROUP;
865 EventType INT; 866 EventDate LOCALMKTDATE; 867 EventPx PRICE; 868 EventText STRING;
869 PctAtRisk PERCENTAGE; 870 NoInstrAttrib NUMINGROUP; 871 InstrAttribType INT;
872 InstrAttribValue STRING; 873 DatedDate LOCALMKTDATE; 874 InterestAccrualDate LOCALMKTDATE;
875 CPProgram INT; 876 CPRegType STRING; 877 UnderlyingCPProgram STRING; 878 UnderlyingCPRegType STRING;
879 UnderlyingQty QTY; 880 TrdMatchID STRING; 882 UnderlyingDirtyPrice PRICE;
883 UnderlyingEndPrice PRICE; 884 UnderlyingStartValue AMT; 885 UnderlyingCurrentValue AMT;
886 UnderlyingEndValue AMT; 887 NoUnderlyingStips NUMINGROUP; 888 UnderlyingStipType STRING;
889 UnderlyingStipValue STRING; 891 MiscFeeBasis INT; 898 MarginRatio PERCENTAGE;
911 TotNumReports INT; 912 LastRptRequested BOOLEAN; 913 AgreementDesc STRING; 914 AgreementID STRING;
915 AgreementDate LOCALMKTDATE; 916 StartDate LOCALMKTDATE; 917 EndDate LOCALMKTDATE;
918 AgreementCurrency CURRENCY; 919 DeliveryType INT; 920 EndAccruedInterestAmt AMT; 921 StartCash AMT;
922 EndCash AMT; 941 UnderlyingStrikeCurrency CURRENCY; 942 LegStrikeCurrency CURRENCY;
943 TimeBracket STRING; 947 StrikeCurrency CURRENCY; 955 LegContractSettlMonth MONTHYEAR;
956 LegInterestAccrualDate LOCALMKTDATE
"""

# Allowed values, space-separated.  Closed FIX 4.4 value sets for the fields the
# engine's conformance and the drop copy depend on.  Values the 4.4 specification
# lists as deprecated are kept where QuickFIX's FIX44.xml keeps them (OrdType 5, A-C,
# F, H), so such messages are not rejected.  ExecType also allows L (Triggered or
# activated by system), which arrived in a later extension pack, because drop copies
# send it.  Fields whose values are open by agreement (PartyIDSource 447, PartyRole
# 452, StipulationType 233, TargetStrategy 847, ...) have no list: any value passes.
_SECURITY_TYPES = (
    "ABS AMENDED AN BA BN BOX BRADY BRIDGE BUYSELL CB CD CL CMBS CMO COFO COFP CORP CP CPP CS "
    "DEFLTED DINP DN DUAL EUCD EUCORP EUCP EUSOV EUSUPRA FAC FADN FOR FORWARD FUT GO IET LOFC LQN "
    "MATURED MBS MF MIO MLEG MPO MPP MPT MT MTN NONE ONITE OPT PEF PFAND PN PS PZFJ RAN REPLACD "
    "REPO RETIRED REV RVLV RVLVTRM SECLOAN SECPLEDGE SPCLA SPCLO SPCLT STN STRUCT SUPRA SWING "
    "TAN TAXA TBA TBILL TBOND TCAL TD TECP TERM TINT TIPS TNOTE TPRN TRAN UST USTB VRDN WAR "
    "WITHDRN WLD XCN XLINKD YANK YCD")
_ENUMS: dict[int, str] = {
    13: "1 2 3 4 5 6",
    18: "0 1 2 3 4 5 6 7 8 9 A B C D E F G H I J K L M N O P Q R S U V W X Y Z a b c d e",
    20: "0 1 2 3", 21: "1 2 3", 22: "1 2 3 4 5 6 7 8 9 A B C D E F G H I J", 29: "1 2 3 4",
    39: "0 1 2 3 4 6 7 8 9 A B C D E",
    40: "1 2 3 4 5 6 7 8 9 A B C D E F G H I J K L M P",
    54: "1 2 3 4 5 6 7 8 9 A B C D E F G", 59: "0 1 2 3 4 5 6 7", 63: "0 1 2 3 4 5 6 7 8 9",
    77: "C F O R", 81: "0 1 2 3 4 5 6", 98: "0 1 2 3 4 5 6", 102: "0 1 2 3 4 5 6 99",
    103: "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 99", 139: "1 2 3 4 5 6 7 8 9 10 11 12",
    150: "0 3 4 5 6 7 8 9 A B C D E F G H I L", 156: "M D", 167: _SECURITY_TYPES,
    201: "0 1", 203: "0 1", 315: "0 1", 323: "1 2 3 4 5 6",
    373: "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 99", 378: "0 1 2 3 4 5 6 7 8 9 10 99",
    380: "0 1 2 3 4 5 6 7", 385: "R S", 388: "0 1 2 3 4 5 6", 423: "1 2 3 4 5 6 7 8 9 10 11",
    427: "0 1 2", 434: "1 2", 442: "1 2 3", 460: "1 2 3 4 5 6 7 8 9 10 11 12 13", 468: "0 1 2",
    480: "M N O Y", 481: "1 2 3 N Y", 484: "B C D E O P Q S", 497: "N Y",
    519: "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", 528: "A G I P R W", 529: "1 2 3 4 5 6 7 8 9 A",
    544: "1 2 3", 549: "1 2 3 4", 581: "1 2 3 4 6 7 8", 582: "1 2 3 4", 589: "0 1 2",
    590: "0 1 2", 591: "0 1", 638: "0 1", 660: "1 2 3 4 5 99", 668: "1 2", 690: "1 2 4 5",
    775: "0 1 2", 788: "1 2 3 4", 827: "0 1", 835: "0 1", 836: "0 1 2 3", 837: "0 1 2", 838: "1 2",
    840: "1 2 3 4", 841: "0 1", 842: "0 1 2 3", 843: "0 1 2", 844: "1 2", 846: "1 2 3 4",
    851: "1 2 3", 854: "0 1", 865: "1 2 3 4 99", 891: "0 1 2", 919: "0 1 2 3",
}

# ------------------------------------------------------------------ msg types
_MSG_TYPE_TABLE = """
0 Heartbeat; 1 TestRequest; 2 ResendRequest; 3 Reject; 4 SequenceReset; 5 Logout; 6 IOI;
7 Advertisement; 8 ExecutionReport; 9 OrderCancelReject; A Logon; B News; C Email;
D NewOrderSingle; E NewOrderList; F OrderCancelRequest; G OrderCancelReplaceRequest;
H OrderStatusRequest; J AllocationInstruction; K ListCancelRequest; L ListExecute;
M ListStatusRequest; N ListStatus; P AllocationInstructionAck; Q DontKnowTrade; R QuoteRequest;
S Quote; T SettlementInstructions; V MarketDataRequest; W MarketDataSnapshotFullRefresh;
X MarketDataIncrementalRefresh; Y MarketDataRequestReject; Z QuoteCancel; a QuoteStatusRequest;
b MassQuoteAcknowledgement; c SecurityDefinitionRequest; d SecurityDefinition;
e SecurityStatusRequest; f SecurityStatus; g TradingSessionStatusRequest; h TradingSessionStatus;
i MassQuote; j BusinessMessageReject; k BidRequest; l BidResponse; m ListStrikePrice; n XMLnonFIX;
o RegistrationInstructions; p RegistrationInstructionsResponse; q OrderMassCancelRequest;
r OrderMassCancelReport; s NewOrderCross; t CrossOrderCancelReplaceRequest;
u CrossOrderCancelRequest; v SecurityTypeRequest; w SecurityTypes; x SecurityListRequest;
y SecurityList; z DerivativeSecurityListRequest; AA DerivativeSecurityList; AB NewOrderMultileg;
AC MultilegOrderCancelReplace; AD TradeCaptureReportRequest; AE TradeCaptureReport;
AF OrderMassStatusRequest; AG QuoteRequestReject; AH RFQRequest; AI QuoteStatusReport;
AJ QuoteResponse; AK Confirmation; AL PositionMaintenanceRequest; AM PositionMaintenanceReport;
AN RequestForPositions; AO RequestForPositionsAck; AP PositionReport;
AQ TradeCaptureReportRequestAck; AR TradeCaptureReportAck; AS AllocationReport;
AT AllocationReportAck; AU ConfirmationAck; AV SettlementInstructionRequest; AW AssignmentReport;
AX CollateralRequest; AY CollateralAssignment; AZ CollateralResponse; BA CollateralReport;
BB CollateralInquiry; BC NetworkCounterpartySystemStatusRequest;
BD NetworkCounterpartySystemStatusResponse; BE UserRequest; BF UserResponse;
BG CollateralInquiryAck; BH ConfirmationRequest
"""

# ------------------------------------------------------------------- layouts
# Components and the named repeating groups (FIX 4.4 "...Grp" blocks) used below.
# Instrument includes PutOrCall (201) and UnderlyingInstrument UnderlyingPutOrCall
# (315), as the FIX 4.4 specification with errata does (QuickFIX's FIX44.xml omits
# them).  Symbol (55) is optional, as in FIX44.xml.
_COMPONENT_SRC: dict[str, str] = {
    "Instrument": "55 65 48 22 {454 455 456} 460 461 167 762 200 541 201 224 225 239 226 227 228 "
                  "255 543 470 471 472 240 202 947 206 231 223 207 106 348 349 107 350 351 691 667 "
                  "875 876 {864 865 866 867 868} 873 874",
    "InstrumentExtension": "668 869 {870 871 872}",
    "FinancingDetails": "913 914 915 918 788 916 917 919 898",
    "UnderlyingInstrument": "311 312 309 305 {457 458 459} 462 463 310 763 313 542 315 241 242 243 "
                            "244 245 246 256 595 592 593 594 247 316 941 317 436 435 308 306 362 "
                            "363 307 364 365 877 878 318 879 810 882 883 884 885 886 "
                            "{887 888 889}",
    "InstrumentLeg": "600 601 602 603 {604 605 606} 607 608 609 764 610 611 248 249 250 251 252 "
                     "253 257 599 596 597 598 254 612 942 613 614 615 616 617 618 619 620 621 622 "
                     "623 624 556 740 739 955 956",
    "Parties": "{453 448 447 452 {802 523 803}}",
    "NestedParties": "{539 524 525 538 {804 545 805}}",
    "Stipulations": "{232 233 234}",
    "LegStipulations": "{683 688 689}",
    "OrderQtyData": "38 152 516 468 469",
    "CommissionData": "12 13 479 497",
    "SpreadOrBenchmarkCurveData": "218 220 221 222 662 663 699 761",
    "YieldData": "235 236 701 696 697 698",
    "PegInstructions": "211 835 836 837 838 840",
    "DiscretionInstructions": "388 389 841 842 843 844 846",
    "TrdgSesGrp": "{386 336 625}",
    "UndInstrmtGrp": "{711 @UnderlyingInstrument}",
    "PreAllocGrp": "{78 79 661 736 467 @NestedParties 80}",
    "ContraGrp": "{382 375 337 437 438 655}",
    "ContAmtGrp": "{518 519 520 521}",
    "MiscFeesGrp": "{136 137 138 139 891}",
    "InstrmtLegGrp": "{555 @InstrumentLeg}",
    "InstrmtLegExecGrp": "{555 @InstrumentLeg 687 690 @LegStipulations 564 565 @NestedParties "
                         "654 566 587 588 637}",
}

_HEADER_SRC = ("8! 9! 35! 49! 56! 115 128 90 91 34! 50 142 57 143 116 144 129 145 43 97 52! 122 "
               "212 213 347 369 {627 628 629 630}")
_TRAILER_SRC = "93 89 10!"

_TEXT = "58 354 355"
_MESSAGE_SRC: dict[str, tuple[str, str]] = {
    "0": ("admin", "112"),
    "1": ("admin", "112!"),
    "2": ("admin", "7! 16!"),
    "3": ("admin", "45! 371 372 373 " + _TEXT),
    "4": ("admin", "123 36!"),
    "5": ("admin", _TEXT),
    "A": ("admin", "98! 108! 95 96 141 789 383 {384 372 385} 464 553 554"),
    "D": ("app", "11! 526 583 @Parties 229 75 1 660 581 589 590 591 70 @PreAllocGrp 63 64 544 635 "
                 "21 18 110 111 100 @TrdgSesGrp 81 @Instrument! @FinancingDetails @UndInstrmtGrp "
                 "140 54! 114 60! @Stipulations 854 @OrderQtyData! 40! 423 44 99 "
                 "@SpreadOrBenchmarkCurveData @YieldData 15 376 377 23 117 59 168 432 126 427 "
                 "@CommissionData 528 529 582 121 120 775 " + _TEXT + " 193 192 640 77 203 210 "
                 "@PegInstructions @DiscretionInstructions 847 848 849 480 481 513 494"),
    "F": ("app", "41! 37 11! 526 583 66 586 1 660 581 @Parties @Instrument! @FinancingDetails "
                 "@UndInstrmtGrp 54! 60! @OrderQtyData! 376 " + _TEXT),
    "G": ("app", "37 @Parties 229 75 41! 11! 526 583 66 586 1 660 581 589 590 591 70 @PreAllocGrp "
                 "63 64 544 635 21 18 110 111 100 @TrdgSesGrp @Instrument! @FinancingDetails "
                 "@UndInstrmtGrp 54! 60! 854 @OrderQtyData! 40! 423 44 99 "
                 "@SpreadOrBenchmarkCurveData @YieldData @PegInstructions @DiscretionInstructions "
                 "847 848 849 376 377 15 59 168 432 126 427 @CommissionData 528 529 582 121 120 775 "
                 + _TEXT + " 193 192 640 77 203 210 114 480 481 513 494"),
    "8": ("app", "37! 198 526 527 11 41 583 693 790 584 911 912 @Parties 229 @ContraGrp 66 548 551 "
                 "549 17! 19 150! 39! 636 103 378 1 660 581 589 590 591 63 64 544 635 @Instrument! "
                 "@FinancingDetails @UndInstrmtGrp 54! @Stipulations 854 @OrderQtyData 40 423 44 99 "
                 "@PegInstructions @DiscretionInstructions 839 845 847 848 849 850 15 376 377 59 "
                 "168 432 126 18 528 529 582 32 652 31 651 669 194 195 30 336 625 943 29 151! 14! "
                 "6! 424 425 426 427 75 60 113 @CommissionData @SpreadOrBenchmarkCurveData "
                 "@YieldData 381 157 230 158 159 738 920 921 922 258 259 260 238 237 118 119 120 "
                 "155 156 21 110 111 77 210 775 " + _TEXT + " 193 192 641 442 480 481 513 494 483 "
                 "515 484 485 638 639 851 @ContAmtGrp @InstrmtLegExecGrp 797 @MiscFeesGrp"),
    "9": ("app", "37! 198 526 11! 583 41! 39! 636 586 66 1 660 581 229 75 60 434! 102 " + _TEXT),
    "j": ("app", "45 372! 379 380! " + _TEXT),
    "d": ("app", "320! 322! 323! @Instrument @InstrumentExtension @UndInstrmtGrp 15 336 625 "
                 + _TEXT + " @InstrmtLegGrp 827 561 562"),
}


# ------------------------------------------------------------------ compiler
def _tokens(src: str) -> list[str]:
    return src.replace("{", " { ").replace("}", " } ").split()


def _compile(src: str, required: bool = True, components: dict[str, str] | None = None) -> tuple[Item, ...]:
    """Compile layout notation into items.

    ``required`` is False inside an optional component: its ``!`` marks then do not
    make fields required (QuickFIX requires a component's required fields only when
    the component itself is required).
    """
    comps = _COMPONENT_SRC if components is None else components
    toks = _tokens(src)
    pos = 0

    def items(until_brace: bool, req: bool) -> tuple[Item, ...]:
        nonlocal pos
        out: list[Item] = []
        while pos < len(toks):
            tok = toks[pos]
            pos += 1
            if tok == "}":
                if not until_brace:
                    raise ValueError(f"unbalanced '}}' in layout {src!r}")
                return tuple(out)
            if tok == "{":
                head = toks[pos]
                pos += 1
                counter = int(head.rstrip("!"))
                members = items(True, req and head.endswith("!"))
                if not members:
                    raise ValueError(f"group {counter} has no members")
                first = members[0]
                delim = first.tag if isinstance(first, FieldRef) else first.counter
                out.append(GroupDef(counter, req and head.endswith("!"), delim, members))
            elif tok.startswith("@"):
                name = tok[1:].rstrip("!")
                out.extend(_compile(comps[name], req and tok.endswith("!"), comps))
            else:
                out.append(FieldRef(int(tok.rstrip("!")), req and tok.endswith("!")))
        if until_brace:
            raise ValueError(f"unclosed '{{' in layout {src!r}")
        return tuple(out)

    return items(False, required)


def _tags(items: tuple[Item, ...]) -> set[int]:
    out: set[int] = set()
    for it in items:
        if isinstance(it, FieldRef):
            out.add(it.tag)
        else:
            out.add(it.counter)
            out |= _tags(it.items)
    return out


def _load_fields() -> dict[int, FieldDef]:
    fields: dict[int, FieldDef] = {}
    for entry in _FIELD_TABLE.replace("\n", " ").split(";"):
        tag_s, name, ftype = entry.split()
        if ftype not in TYPES:
            raise ValueError(f"field {tag_s}: unknown type {ftype}")
        tag = int(tag_s)
        values = _ENUMS.get(tag)
        if values is None and ftype == "BOOLEAN":
            values = "Y N"
        fields[tag] = FieldDef(name, ftype, frozenset(values.split()) if values else None)
    return fields


FIELDS: dict[int, FieldDef] = _load_fields()

#: Every tag FIX 4.4 defines: 1-956 except 101, 261 and 809 (not defined in FIX 4.4,
#: nor in QuickFIX's FIX44.xml).
FIX44_TAGS: frozenset[int] = frozenset(range(1, 957)) - {101, 261, 809}

MSG_TYPES: dict[str, str] = dict(e.split() for e in _MSG_TYPE_TABLE.replace("\n", " ").split(";"))
FIELDS[35] = FieldDef("MsgType", "STRING", frozenset(MSG_TYPES))

COMPONENTS: dict[str, tuple[Item, ...]] = {name: _compile(src, False) for name, src in _COMPONENT_SRC.items()}
HEADER: tuple[Item, ...] = _compile(_HEADER_SRC)
TRAILER: tuple[Item, ...] = _compile(_TRAILER_SRC)
MESSAGES: dict[str, MessageDef] = {
    mt: MessageDef(mt, MSG_TYPES[mt], cat, _compile(src)) for mt, (cat, src) in _MESSAGE_SRC.items()
}


def field_name(tag: int) -> str:
    """The field's FIX name, or the tag number as text when this dictionary has no name."""
    fd = FIELDS.get(tag)
    return fd.name if fd is not None else str(tag)


def _counters(items: tuple[Item, ...]) -> set[int]:
    out: set[int] = set()
    for it in items:
        if isinstance(it, GroupDef):
            out |= {it.counter} | _counters(it.items)
    return out


def _self_check() -> None:
    """Every tag a layout uses has a field definition, every definition is a FIX 4.4
    tag, and every group counter is a NUMINGROUP (validation reads it as a count)."""
    used = _tags(HEADER) | _tags(TRAILER)
    counters = _counters(HEADER)
    for md in MESSAGES.values():
        used |= _tags(md.items)
        counters |= _counters(md.items)
    not_counts = sorted(t for t in counters if t in FIELDS and FIELDS[t].type != "NUMINGROUP")
    if not_counts:
        raise ValueError(f"group counters not typed NUMINGROUP: {not_counts}")
    missing = sorted(used - FIELDS.keys())
    stray = sorted((FIELDS.keys() | _ENUMS.keys()) - FIX44_TAGS)
    unused_enums = sorted(_ENUMS.keys() - FIELDS.keys())
    if missing or stray or unused_enums:
        raise ValueError(f"dictionary inconsistent: no FieldDef for {missing} {unused_enums}; "
                         f"not FIX 4.4 tags: {stray}")


_self_check()
