"""The ``riskd`` command line.

    riskd demo                 the whole daemon with a simulated OMS and market (live table)
    riskd run -c CONFIG        the daemon: drop copy -> position shards (Ray actors)
    riskd status               a running daemon's latency per stage, accounts, alerts, health
    riskd check -c CONFIG ...  ask the pre-trade hook whether an order may go (what-if by default)
    riskd kill-switch ...      engage or clear a kill switch on the running daemon (journaled)
    riskd price FILE.csv       option values and Greeks for a CSV of options
    riskd margin BOOK.toml     offline margin calculator (IM, MM, scan, VaR, stress)
    riskd config check FILE    decode and check a config file
    riskd bench pricing        pricing and margin throughput, as JSON
    riskd bench fix            FIX parse and session throughput, as JSON
    riskd bench pipeline       fills through FIX into the running daemon: latency, rate, loss, memory
    riskd bench pretrade       pre-trade check round trips against the running daemon, vs the zmq floor
    riskd bench liquidation    breach -> NewOrderSingle on the wire, and planner time, as JSON
    riskd bench recovery       journal append, restart with 1M journaled fills, kill -9 trials, as JSON
    riskd bench fpga           FPGA overlay in simulation: cycles, errors, vs the software path, as JSON
    riskd replay JOURNAL       positions and cash rebuilt offline from a drop-copy journal

Exit codes: 0 success, 1 some input rows were bad, 2 the input could not be used.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from daemon.config_errors import ConfigError


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.margin_only:
        from daemon.book import default_book_path

        args.book = str(default_book_path())
        return _cmd_margin(args)
    from daemon.demo import run_demo

    return run_demo(args.duration, tty=not args.no_tty and sys.stdout.isatty(), out=sys.stdout)


def _cmd_margin(args: argparse.Namespace) -> int:
    from daemon.book import margin_book
    from daemon.margin_report import render_json, render_text

    report = margin_book(args.book)
    (render_json if args.json else render_text)(report, sys.stdout)
    return 0


def _cmd_price(args: argparse.Namespace) -> int:
    from daemon.calc_price import run_price

    return run_price(args.file, args.json, sys.stdout, sys.stderr)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from daemon.config import load_config

    from daemon.config import resolve_data_path
    from risk.history import read_history

    config = load_config(args.file)
    history = ""
    if config.history is not None:
        loaded = read_history(resolve_data_path(config.history))
        history = f", history {len(loaded.dates)} days of {list(loaded.underlyings)}"
    print(f"{args.file}: ok ({len(config.underlyings)} underlyings, {len(config.instruments)} instruments,"
          f" {len(config.accounts)} accounts, grids {sorted(config.margin.grids)},"
          f" profiles {sorted(config.margin.profiles)}{history})")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from daemon.bench_pricing import run_bench_pricing

    return run_bench_pricing(args.json, sys.stdout, quick=args.quick)


def _cmd_bench_fix(args: argparse.Namespace) -> int:
    from daemon.bench_fix import run_bench_fix

    return run_bench_fix(sys.stdout, quick=args.quick)


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from daemon.bench_pipeline import options_from_args, run_bench_pipeline

    return run_bench_pipeline(sys.stdout, options_from_args(args))


def _cmd_bench_liquidation(args: argparse.Namespace) -> int:
    from daemon.bench_liquidation import run_bench_liquidation

    return run_bench_liquidation(sys.stdout, quick=args.quick)


def _cmd_bench_fpga(args: argparse.Namespace) -> int:
    from daemon.bench_fpga import run_bench_fpga

    return run_bench_fpga(sys.stdout, quick=args.quick)


def _cmd_bench_pretrade(args: argparse.Namespace) -> int:
    from daemon.bench_pretrade import options_from_args, run_bench_pretrade

    return run_bench_pretrade(sys.stdout, options_from_args(args))


def _cmd_run(args: argparse.Namespace) -> int:
    from daemon.book import load_book
    from daemon.config import load_config
    from daemon.run import run_until_signalled

    config = load_config(args.config)
    book, _ = load_book(args.market)
    return run_until_signalled(config, book.market, address=args.address)


def _cmd_replay(args: argparse.Namespace) -> int:
    from daemon.replay_cmd import run_replay
    from fix.journal import JournalError

    try:
        return run_replay(args.journal, args.config, args.market, args.json, sys.stdout)
    except JournalError as exc:
        print(f"riskd: {exc}", file=sys.stderr)
        return 2


def _cmd_bench_recovery(args: argparse.Namespace) -> int:
    from daemon.bench_recovery import options_from_args, run_bench_recovery

    return run_bench_recovery(sys.stdout, options_from_args(args))


def _cmd_status(args: argparse.Namespace) -> int:
    from daemon.status_cmd import run_status

    return run_status(args.url, args.config, args.json, sys.stdout, sys.stderr, timeout_s=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskd", description="Real-time margin and pre-trade risk daemon.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole daemon on its embedded default (simulated OMS and market)")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds to run (default 20)")
    demo.add_argument("--no-tty", action="store_true", help="no live table: print a final summary and exit 0")
    demo.add_argument("--margin-only", action="store_true",
                      help="only the margin report of the built-in sample book (no daemon)")
    demo.add_argument("--json", action="store_true", help="with --margin-only: print JSON")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run the daemon (Ray actors) until SIGTERM/SIGINT")
    run.add_argument("-c", "--config", required=True, help="riskd config TOML (or builtin:default.toml)")
    run.add_argument("--market", default="builtin:demo_book.toml",
                     help="book whose market snapshot prices the positions (until market data is wired)")
    run.add_argument("--address", default=None, help="join this Ray cluster instead of starting one")
    run.set_defaults(func=_cmd_run)

    from daemon.control_cmd import add_parsers as add_control_parsers

    add_control_parsers(sub)  # riskd check, riskd kill-switch

    status = sub.add_parser("status", help="a running daemon's latency per stage, accounts, alerts and health")
    status.add_argument("--url", default=None, help="the daemon's HTTP base URL (default: from -c, else "
                        "http://127.0.0.1:9464)")
    status.add_argument("-c", "--config", default=None, help="riskd config: daemon.run_dir's http.url, "
                        "else daemon.http_host/http_port")
    status.add_argument("--json", action="store_true", help="print the daemon's /status JSON as received")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon (default 5)")
    status.set_defaults(func=_cmd_status)

    replay = sub.add_parser("replay", help="rebuild positions and cash offline from a drop-copy journal (audit)")
    replay.add_argument("journal", help="journal folder (<state_dir>/journal/<Sender>-<Target>)")
    replay.add_argument("-c", "--config", default="builtin:default.toml", help="riskd config: accounts, cash,"
                        " instruments (default builtin:default.toml)")
    replay.add_argument("--market", default="builtin:demo_book.toml", help="book whose market snapshot"
                        " builds the shard (positions and cash do not depend on it)")
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    replay.set_defaults(func=_cmd_replay)

    price = sub.add_parser("price", help="option values and Greeks for a CSV file")
    price.add_argument("file", help="CSV with columns type,spot,strike,rate,dividend,time,vol[,model]")
    price.add_argument("--json", action="store_true", help="one JSON object per row instead of CSV")
    price.set_defaults(func=_cmd_price)

    margin = sub.add_parser("margin", help="offline margin calculator for a book file")
    margin.add_argument("book", help="book TOML (see daemon/book.py), or builtin:demo_book.toml")
    margin.add_argument("--json", action="store_true", help="print JSON instead of tables")
    margin.set_defaults(func=_cmd_margin)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="decode and check a config file")
    check.add_argument("file")
    check.set_defaults(func=_cmd_config_check)

    bench = sub.add_parser("bench", help="benchmarks, printed as JSON")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    pricing = bench_sub.add_parser("pricing", help="Greeks, revaluation and what-if throughput vs QuantLib")
    pricing.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    pricing.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    pricing.set_defaults(func=_cmd_bench)
    fix = bench_sub.add_parser("fix", help="fast parser vs simplefix, and drop-copy messages/s through a session")
    fix.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    fix.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    fix.set_defaults(func=_cmd_bench_fix)
    pipeline = bench_sub.add_parser("pipeline", help="fills through a real FIX session into the running daemon:"
                                    " end-to-end latency, sustained rate, loss, memory")
    pipeline.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    pipeline.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    pipeline.add_argument("--accounts", type=int, default=None, help="accounts (default 1000)")
    pipeline.add_argument("--positions", type=int, default=None, help="positions per account (default 50)")
    pipeline.add_argument("--e2e-rate", type=float, default=None, help="fills/s of the latency phase (default 2000)")
    pipeline.add_argument("--e2e-seconds", type=float, default=None, help="seconds of the latency phase (default 10)")
    pipeline.add_argument("--hold-seconds", type=float, default=None, help="seconds each rate is held (default 30)")
    pipeline.add_argument("--rates", default=None, help="comma list of fills/s for the sustained ladder (default"
                          " 1000,2000,3000,5000,7500,10000,15000,20000,30000,40000; stops at the first not held)")
    pipeline.add_argument("--var-every", type=int, default=None,
                          help="every n-th account on the VaR profile (default 10; 0: none)")
    pipeline.set_defaults(func=_cmd_bench_pipeline)
    pretrade = bench_sub.add_parser("pretrade", help="pre-trade check round trips against the running daemon:"
                                    " p50/p99/p99.9, one shard's checks/s, vs a bare zmq DEALER/ROUTER floor")
    pretrade.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    pretrade.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    pretrade.add_argument("--accounts", type=int, default=None, help="accounts (default 1000)")
    pretrade.add_argument("--positions", type=int, default=None, help="positions per account (default 50)")
    pretrade.add_argument("--checks", type=int, default=None, help="measured sequential checks (default 20000,"
                          " after 2000 of warm-up)")
    pretrade.add_argument("--seconds", type=float, default=None, help="seconds of the one-shard throughput phase"
                          " (default 5)")
    pretrade.add_argument("--var-every", type=int, default=None,
                          help="every n-th account on the VaR profile (default 10, as bench pipeline; 0: none)")
    pretrade.add_argument("--client-cpus", default=None,
                          help="CPU ids to pin the client and the floor's echo process to, e.g. 1 (default: not pinned)")
    pretrade.add_argument("--shard-cpus", default=None,
                          help="CPU ids per shard, shards separated by ';', e.g. '1;1' (default: the config's)")
    pretrade.set_defaults(func=_cmd_bench_pretrade)
    recovery = bench_sub.add_parser("recovery", help="journal append per fsync policy, restart-to-serving with"
                                    " 1,000,000 journaled fills, kill -9 trials (lost and doubled fills)")
    recovery.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    recovery.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    recovery.add_argument("--fills", type=int, default=None, help="journaled fills for recovery_s_1m"
                          " (default 1000000)")
    recovery.add_argument("--trial-reports", type=int, default=None, help="reports per kill trial stream"
                          " (default 140000, about 100,000 fills)")
    recovery.add_argument("--kills", type=int, default=None, help="kills per trial kind (default 10)")
    recovery.add_argument("--kinds", default=None, help="comma list of daemon,position,ingest (default all)")
    recovery.add_argument("--only", default=None, help="comma list of parts to run: append,restart,trials"
                          " (default all)")
    recovery.add_argument("--restart-runs", type=int, default=None, help="restarts timed on copies of the"
                          " 1M-fill state (recovery_s_1m: their median; default 1)")
    recovery.set_defaults(func=_cmd_bench_recovery)
    liquidation = bench_sub.add_parser("liquidation", help="AccountRisk crossing the liquidation tier -> NewOrderSingle"
                                       " bytes on the execution socket; planner time for 50 and 500 positions")
    liquidation.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    liquidation.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    liquidation.set_defaults(func=_cmd_bench_liquidation)
    fpga = bench_sub.add_parser("fpga", help="FPGA overlay (simulated): Greeks and risk filter cycles, errors,"
                                " vs the software path's measured times")
    fpga.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    fpga.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    fpga.set_defaults(func=_cmd_bench_fpga)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"riskd: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. `riskd demo | head`): not an error of ours.
        sys.stderr.close()
        return 0
    except (OSError, ValueError) as exc:
        print(f"riskd: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
