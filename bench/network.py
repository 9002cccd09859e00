"""First export to the network targets, side by side with ``rclone copy`` (issue 13).

Usage::

    .venv/bin/python bench/network.py [--count 10000] [--only wsgidav,apache,sftp,s3,rclone]
                                      [--concurrency N] [--transfers 8] [--profile DIR] [--keep]

Starts the servers the tests use, from the test fixtures' own helpers, on
127.0.0.1: WsgiDAV (in this process, 8 threads), Debian's Apache with mod_dav
(under ``unshare --user`` when run as root), OpenSSH's sshd (internal-sftp)
and moto's S3 server (in this process). Generates ``--count`` unique PDF-like
documents of 10-20 KB in 10 folders, imports them once (``invoicesync fetch``)
and then, for each selected target in turn, in ONE run:

* ``rclone copy --transfers 8`` of the corpus to a fresh folder on the same
  server (an on-the-fly remote, configured through ``RCLONE_*`` variables);
* ``invoicesync sync --no-fetch ACCOUNT``: the first export of every document
  to a fresh folder on that server, through the CLI and the engine (ledger,
  planning, the target), with the account's ``concurrency`` left unset (the
  target's default) unless ``--concurrency`` is given.

``rclone`` is the ``rclone`` export target in its default mode, writing to the
WsgiDAV server; its peer is ``rclone copy`` to the same server.
``rclone-local`` is the same target writing to a local folder (rclone's
``local`` backend), against ``rclone copy`` to another local folder: what the
target itself costs, without a server's. Each command
runs under ``/usr/bin/time -v`` (wall, CPU = user + system, peak RSS); the
files that arrived are counted on the server side. The table gives documents
per second and the ratio of invoicesync's wall time to rclone's. Neither side
fsyncs on the server (the servers decide that); invoicesync fsyncs its ledger
and the WebDAV target's record of temporaries.

``--profile DIR`` runs each export once more (to a fresh folder) in-process
under cProfile with every thread profiled (the workers are threads) by its
CPU time (``time.thread_time``), and prints the top functions. The machine's load is printed before
and after. Needs root (sshd), rclone, apache2, /usr/bin/time and the ``test``
extra (wsgidav, cheroot, moto, boto3, paramiko).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# bench/ is sys.path[0]: the corpus, /usr/bin/time and load helpers of compare.py.
from compare import Measure, count_files, generate, load  # noqa: E402
from fixtures.sshd import start_sshd  # noqa: E402
from fixtures.webdav_server import serve_apache, serve_wsgidav  # noqa: E402
from sync import parse_time_v  # noqa: E402

TARGETS = ("wsgidav", "apache", "sftp", "s3", "rclone", "rclone-local")


@dataclass
class Case:
    """One target: its account in the configuration and its rclone peer."""

    name: str
    account: str  # YAML of the export account, without its id line
    peer_remote: str  # where ``rclone copy`` writes
    peer_env: dict[str, str]
    count_ours: Callable[[], int]
    count_peer: Callable[[], int]
    env: dict[str, str] = field(default_factory=dict)  # for the invoicesync command
    fresh: Callable[[str], str] | None = None  # account YAML for a fresh folder (profile)


def obscure(password: str) -> str:
    done = subprocess.run(["rclone", "obscure", password], capture_output=True, text=True)
    return done.stdout.strip()


def webdav_env(url: str, user: str, password: str) -> dict[str, str]:
    return {
        "RCLONE_WEBDAV_URL": url,
        "RCLONE_WEBDAV_VENDOR": "other",
        "RCLONE_WEBDAV_USER": user,
        "RCLONE_WEBDAV_PASS": obscure(password),
    }


def webdav_case(name: str, server: Any, opts: str = "") -> Case:
    # One variable per server: the commands get every account's secrets at once.
    secret = f"BENCH_{name.upper()}_PASSWORD"

    def account(folder: str) -> str:
        return (
            "    type: webdav\n"
            "    options:\n"
            f"      url: {server.url}\n"
            f"      path: {folder}\n"
            f"      username: {server.username}\n"
            f"      password: env:{secret}\n" + opts
        )

    return Case(
        name,
        account(f"{name}-invoicesync"),
        f":webdav:{name}-rclone",
        webdav_env(server.url, server.username, server.password),
        lambda: len(server.files(server.root / f"{name}-invoicesync")),
        lambda: len(server.files(server.root / f"{name}-rclone")),
        {secret: server.password},
        account,
    )


def write_config(work: Path, cases: list[Case], concurrency: int | None) -> Path:
    lines = [
        "version: 1",
        "timezone: Europe/Berlin",
        "state: ./state",
        "log: {format: json, level: warning}",
        "companies:",
        "  - {id: acme, name: Acme}",
        "sources:",
        "  - id: inbox",
        "    type: folder",
        f"    options: {{path: {work / 'corpus'}, company: acme}}",
        "exports:",
    ]
    for case in cases:
        lines.append(f"  - id: {case.name}")
        lines.append('    filename: "{filename}.{ext}"')
        if concurrency is not None:
            lines.append(f"    concurrency: {concurrency}")
        lines.append(case.account.rstrip("\n"))
    config = work / "invoicesync.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def profile_export(invoicesync_args: list[str], env: dict[str, str], out: Path) -> None:
    """Run the CLI in this process under cProfile, every thread included; print the top."""
    from invoicesync.daemon.cli import main as cli

    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        profiles.append(prof)
        prof.enable()
        try:
            original_run(self)
        finally:
            prof.disable()

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    threading.Thread.run = run  # type: ignore[method-assign]
    # CPU time of each thread (time.thread_time), not wall time: waits on the
    # server or on a lock would otherwise swamp what invoicesync itself spends.
    main_prof = cProfile.Profile(time.thread_time)
    try:
        main_prof.enable()
        with contextlib.suppress(SystemExit):
            cli.main(invoicesync_args, standalone_mode=True)
    finally:
        main_prof.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    stats = pstats.Stats(main_prof)
    for prof in profiles:
        with contextlib.suppress(TypeError):  # a thread that never enabled
            stats.add(prof)
    stats.dump_stats(str(out))
    print(f"\n# profile {out} (CPU time of all threads)", flush=True)
    stats.sort_stats("cumulative").print_stats(r"(daemon|plugins|connectors_builtin)/", 15)
    stats.sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="documents (default 10000)")
    parser.add_argument(
        "--only", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="set the accounts' concurrency (default: left unset, the target's default)",
    )
    parser.add_argument("--transfers", type=int, default=8, help="rclone's --transfers (8)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="also profile each export")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    wanted = [t for t in args.only.split(",") if t]
    unknown = set(wanted) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    invoicesync = Path(sys.executable).with_name("invoicesync")
    if not invoicesync.exists():
        parser.error(f"{invoicesync} not found: run this with the venv's python")

    work = Path(tempfile.mkdtemp(prefix="invoicesync-bench-network-", dir=args.workdir))
    print(f"# load before (1, 5, 15 min): {load()}; {os.cpu_count()} CPUs; {work}", flush=True)
    stack = contextlib.ExitStack()
    failed = False
    try:
        size = generate(work / "corpus", args.count, 10)
        print(f"# generated {args.count:,} files, {size / 1e6:,.0f} MB", flush=True)
        cases: list[Case] = []
        if "wsgidav" in wanted or "rclone" in wanted:
            dav = stack.enter_context(serve_wsgidav(work / "wsgidav"))
        if "wsgidav" in wanted:
            cases.append(webdav_case("wsgidav", dav))
        if "apache" in wanted:
            cases.append(webdav_case("apache", stack.enter_context(serve_apache(work / "apache"))))
        if "sftp" in wanted:
            ssh = start_sshd(work / "sshd")
            stack.callback(ssh.stop)
            known = ssh.known_hosts(work)

            def sftp_account(folder: str) -> str:
                return (
                    "    type: sftp\n"
                    "    options:\n"
                    f"      host: {ssh.host}\n"
                    f"      port: {ssh.port}\n"
                    f"      username: {ssh.key_user}\n"
                    f"      private_key: {ssh.user_key}\n"
                    f"      known_hosts: {known}\n"
                    f"      path: {work / 'sftp' / folder}\n"
                )

            cases.append(
                Case(
                    "sftp",
                    sftp_account("invoicesync"),
                    f":sftp:{work / 'sftp' / 'rclone'}",
                    {
                        "RCLONE_SFTP_HOST": ssh.host,
                        "RCLONE_SFTP_PORT": str(ssh.port),
                        "RCLONE_SFTP_USER": ssh.key_user,
                        "RCLONE_SFTP_KEY_FILE": str(ssh.user_key),
                        "RCLONE_SFTP_KNOWN_HOSTS_FILE": str(known),
                        # Otherwise rclone runs md5sum over ssh after every upload
                        # (x16 slower here); invoicesync verifies no remote hash either.
                        "RCLONE_SFTP_DISABLE_HASHCHECK": "true",
                    },
                    lambda: count_files(work / "sftp" / "invoicesync"),
                    lambda: count_files(work / "sftp" / "rclone"),
                    fresh=sftp_account,
                )
            )
        if "s3" in wanted:
            import boto3
            from helpers import free_port
            from moto.server import ThreadedMotoServer

            port = free_port()
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request
            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            moto.start()
            stack.callback(moto.stop)
            endpoint = f"http://127.0.0.1:{port}"
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench-secret",
            )
            s3.create_bucket(Bucket="bench")

            def s3_count(prefix: str) -> int:
                pages = s3.get_paginator("list_objects_v2").paginate(
                    Bucket="bench", Prefix=prefix + "/"
                )
                return sum(len(page.get("Contents", [])) for page in pages)

            def s3_account(folder: str) -> str:
                return (
                    "    type: s3\n"
                    "    options:\n"
                    f"      endpoint_url: {endpoint}\n"
                    "      bucket: bench\n"
                    f"      prefix: {folder}\n"
                    "      access_key_id: bench\n"
                    "      secret_access_key: env:BENCH_S3_SECRET\n"
                )

            cases.append(
                Case(
                    "s3",
                    s3_account("invoicesync"),
                    ":s3:bench/rclone",
                    {
                        "RCLONE_S3_PROVIDER": "Other",
                        "RCLONE_S3_ENDPOINT": endpoint,
                        "RCLONE_S3_ACCESS_KEY_ID": "bench",
                        "RCLONE_S3_SECRET_ACCESS_KEY": "bench-secret",
                        "RCLONE_S3_REGION": "us-east-1",
                    },
                    lambda: s3_count("invoicesync"),
                    lambda: s3_count("rclone"),
                    {"BENCH_S3_SECRET": "bench-secret"},
                    s3_account,
                )
            )
        if "rclone" in wanted:
            env = webdav_env(dav.url, dav.username, dav.password)

            def rclone_account(folder: str) -> str:
                return f"    type: rclone\n    options:\n      remote: ':webdav:{folder}'\n"

            cases.append(
                Case(
                    "rclone",
                    rclone_account("rclone-target-invoicesync"),
                    ":webdav:rclone-target-rclone",
                    env,
                    lambda: len(dav.files(dav.root / "rclone-target-invoicesync")),
                    lambda: len(dav.files(dav.root / "rclone-target-rclone")),
                    env,
                    rclone_account,
                )
            )

        if "rclone-local" in wanted:
            local = work / "rclone-local"

            def rclone_local_account(folder: str) -> str:
                return f"    type: rclone\n    options:\n      remote: ':local:{local / folder}'\n"

            cases.append(
                Case(
                    "rclone-local",
                    rclone_local_account("invoicesync"),
                    f":local:{local / 'rclone'}",
                    {},
                    lambda: count_files(local / "invoicesync"),
                    lambda: count_files(local / "rclone"),
                    fresh=rclone_local_account,
                )
            )

        config = write_config(work, cases, args.concurrency)
        base = [str(invoicesync), "--config", str(config), "--log-level", "warning"]
        # Every account's secrets: the whole configuration is validated by each command.
        our_env = {**os.environ}
        for case in cases:
            our_env.update(case.env)
        fetch = timed_env([*base, "fetch"], our_env)
        print(
            f"# import (fetch): {fetch.wall_s:.1f} s, CPU {fetch.cpu_s:.1f} s, exit {fetch.code}",
            flush=True,
        )
        if fetch.code != 0:
            print(fetch.err, file=sys.stderr)
            return 1
        rows: list[tuple[Case, Measure, Measure, int, int]] = []
        for case in cases:
            peer_env = {**os.environ, **case.peer_env}
            # A CA bundle for AWS (set on some machines) makes rclone's S3 backend
            # refuse to start ("unsupported transport"); the endpoint is plain http.
            peer_env.pop("AWS_CA_BUNDLE", None)
            peer = timed_env(
                [
                    "rclone",
                    "copy",
                    "--transfers",
                    str(args.transfers),
                    str(work / "corpus"),
                    case.peer_remote,
                ],
                peer_env,
            )
            ours = timed_env([*base, "sync", "--no-fetch", case.name], our_env)
            got_ours, got_peer = case.count_ours(), case.count_peer()
            print(
                f"# {case.name}: invoicesync {ours.wall_s:.1f} s (CPU {ours.cpu_s:.1f}, "
                f"{ours.rss_mib:.0f} MiB, exit {ours.code}, {got_ours} files); rclone copy "
                f"{peer.wall_s:.1f} s (CPU {peer.cpu_s:.1f}, exit {peer.code}, {got_peer} files); "
                f"load {load()}",
                flush=True,
            )
            for what, m, got in (("invoicesync", ours, got_ours), ("rclone", peer, got_peer)):
                if m.code != 0 or got != args.count:
                    failed = True
                    print(f"# {case.name} {what}: {got} files\n{m.err}", file=sys.stderr)
            rows.append((case, ours, peer, got_ours, got_peer))
        print(f"# load after (1, 5, 15 min): {load()}", flush=True)
        print(
            f"\nN = {args.count:,} documents of 10-20 KB, first export; concurrency "
            f"{args.concurrency if args.concurrency is not None else 'unset (target default)'}\n"
        )
        print(
            "| target | invoicesync | docs/s | `rclone copy --transfers "
            f"{args.transfers}` same server | docs/s | ratio (wall) |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for case, ours, peer, _, _ in rows:
            print(
                f"| {case.name} | {ours.wall_s:.1f} s (CPU {ours.cpu_s:.1f}) | "
                f"{args.count / ours.wall_s:.0f} | {peer.wall_s:.1f} s (CPU {peer.cpu_s:.1f}) | "
                f"{args.count / peer.wall_s:.0f} | {ours.wall_s / peer.wall_s:.2f}× |"
            )
        sys.stdout.flush()
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for case in cases:
                if case.fresh is None:
                    continue
                # A new account id: the ledger has every document exported to the old one.
                case.name, case.account = f"{case.name}-prof", case.fresh(f"{case.name}-profiled")
                config = write_config(work, [case], args.concurrency)
                profile_export(
                    [
                        "--config",
                        str(config),
                        "--log-level",
                        "warning",
                        "sync",
                        "--no-fetch",
                        case.name,
                    ],
                    case.env,
                    args.profile / f"{case.name}.prof",
                )
        return 1 if failed else 0
    finally:
        stack.close()
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def timed_env(cmd: list[str], env: dict[str, str]) -> Measure:
    """:func:`compare.timed` with an environment of its own."""
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False, env=env
    )
    elapsed = time.perf_counter() - start
    wall, cpu, rss = parse_time_v(proc.stderr)
    return Measure(wall or elapsed, cpu, rss, proc.returncode, proc.stderr[-2000:])


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"# bench took {time.perf_counter() - start:.0f} s")
    sys.exit(code)
