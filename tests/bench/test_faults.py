"""bench.faults and its accounting (bench.loss): a tiny SIGKILL run end to end, and the counts
on hand-made witnesses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.faults import command, parse_args, run, tunnel_plan, write
from bench.loss import Counts, account
from bench.systems import NODE_DIR
from cluster.processes import nginx_binary

USERS = ["a", "b"]


def counts(statuses: dict[int, str], received: dict[str, list[int]],
           connects: dict[str, list[dict[str, object]]] | None = None) -> Counts:
    recipients = {n: USERS[n % 2] for n in statuses}
    return account(statuses, recipients, received, connects or {})


def test_an_accepted_message_nobody_received_is_lost_and_a_refused_one_is_not() -> None:
    result = counts({0: "sent", 1: "stored", 2: "refused", 3: "PublishError"}, {"a": [], "b": [1]})

    assert (result.sent, result.stored, result.refused, result.failed) == (1, 1, 1, 1)
    assert (result.delivered, result.lost, result.lost_ids) == (1, 1, [0])
    assert result.adds_up()


def test_copies_lower_ids_after_higher_ones_and_strangers_are_counted_apart() -> None:
    statuses = dict.fromkeys(range(6), "sent") | {4: "refused"}
    # a: 2 before 0 (out of order), 2 again (a copy), 4 was refused, 1 is b's
    result = counts(statuses, {"a": [2, 0, 2, 4, 1], "b": [1, 3, 5]})

    assert (result.received, result.delivered, result.duplicates, result.out_of_order, result.unexpected) == \
        (8, 5, 1, 1, 2)
    assert result.lost == 0 and result.adds_up()


def test_reconnects_are_every_connect_after_a_riders_first() -> None:
    connects: dict[str, list[dict[str, object]]] = {
        "a": [{"recovered": False}, {"recovered": True}, {"recovered": False}], "b": [{"recovered": False}]}
    result = counts({}, {}, connects)

    assert (result.reconnects, result.recovered, result.not_recovered) == (2, 1, 1)


def test_a_tunnel_plan_takes_its_share_within_the_run_and_the_offline_bounds() -> None:
    users = [f"u{i}" for i in range(100)]
    plan = tunnel_plan(users, share=0.3, duration=40, offline=(5, 60), seed=7)

    assert len(plan) == 30 and len({p["user"] for p in plan}) == 30
    assert all(0 <= p["at_ms"] <= 40_000 and 5_000 <= p["offline_ms"] <= 60_000 for p in plan)
    assert plan == tunnel_plan(users, share=0.3, duration=40, offline=(5, 60), seed=7)


@pytest.mark.parametrize("argv", [["kill", "--users", "0"], ["tunnel", "--offline", "10", "5"],
                                  ["tunnel", "--offline-share", "2"], ["nope"]])
def test_arguments_out_of_range_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2


@pytest.mark.parametrize("argv", [["kill"], ["rolling", "--gate", "replica", "--rate", "12.5"],
                                  ["tunnel", "--seed", "3", "--offline", "1", "2.5", "--users", "9"],
                                  ["reshard", "--replicas", "2"], ["failover", "--duration", "30"]])
def test_the_reported_command_repeats_the_run(argv: list[str]) -> None:
    args = parse_args(argv)

    assert parse_args(command(args).split()[3:]) == args


@pytest.mark.skipif(shutil.which("node") is None or nginx_binary() is None
                    or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir(),
                    reason="needs node, nginx and socket.io-client (npm ci in bench/node)")
@pytest.mark.timeout(40)
async def test_riders_of_a_killed_replica_recover_and_no_accepted_message_is_lost(tmp_path: Path) -> None:
    args = parse_args(["kill", "--users", "12", "--replicas", "2", "--networks", "8", "--duration", "5",
                       "--rate", "40", "--out", str(tmp_path)])

    doc = await run(args)

    result = Counts(**doc["counts"])
    assert result.attempted == 200 and result.adds_up()
    assert result.sent + result.stored == 200 and result.refused == result.failed == 0
    # Not duplicates: a live copy of a message that the replay already wrote is, now and then,
    # written again (bench/FAULTS.md, "replay and live race"); the report counts them.
    assert (result.lost, result.out_of_order, result.unexpected) == (0, 0, 0)
    [kill] = [entry["what"] for entry in doc["timeline"] if entry["what"].startswith("SIGKILL")]
    killed = int(kill.split("(")[1].split()[0])  # "SIGKILL replica-1 (6 riders)"
    assert killed > 0 and result.reconnects == result.recovered == killed
    assert sum(doc["per_replica"].values()) == 12
    paths = write(doc, tmp_path)
    assert "| **lost** (accepted, never received) | 0 |" in paths[1].read_text()
    assert (tmp_path / "logs" / "kill" / "riders.json").is_file()
