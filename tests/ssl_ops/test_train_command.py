"""The launch command (ssl_ops.train.command): one node standalone, several at a rendezvous, settings refused
with the setting named."""

import pytest

from ssl_ops.train.command import LaunchError, Torchrun, launch_spec, train_args


def test_one_node_is_standalone_and_passes_the_cli_arguments_through():
    spec = launch_spec(Torchrun(nproc_per_node=2), "ssl_ops.train", "run/train.json", ["a/index.json", "b/index.json"],
                       "run/")
    assert spec.argv == ["torchrun", "--nnodes", "1", "--nproc-per-node", "2", "--standalone", "--max-restarts", "0",
                         "--log-dir", "run/logs", "--tee", "3", "-m", "ssl_ops.train", "--config", "run/train.json",
                         "--index", "a/index.json", "b/index.json", "--out", "run", "--print-every", "10"]
    assert spec.env == {"PYTHONUNBUFFERED": "1"}


def test_several_nodes_meet_at_a_rendezvous_with_their_own_launcher_and_env():
    spec = launch_spec(Torchrun(nproc_per_node=8, nnodes="2:4", rdzv_endpoint="node0:29400", rdzv_id="k1",
                                env={"NCCL_DEBUG": "WARN"}),
                       "pipelines.train_pipes", "c.json", ["s3://b/i.json"], "/m/k1", launcher=["python", "-m", "x"])
    assert spec.argv[:13] == ["python", "-m", "x", "--nnodes", "2:4", "--nproc-per-node", "8", "--rdzv-backend", "c10d",
                              "--rdzv-endpoint", "node0:29400", "--rdzv-id", "k1"]
    assert "--standalone" not in spec.argv and spec.env["NCCL_DEBUG"] == "WARN"


@pytest.mark.parametrize("run,message", [
    (Torchrun(nproc_per_node=0), "nproc_per_node must be an integer >= 1"),
    (Torchrun(nnodes=2), "set rdzv_endpoint"),
    (Torchrun(nnodes="0"), "nnodes must be N or MIN:MAX"),
    (Torchrun(env={"A B": "1"}), "not variable names"),
])
def test_unusable_settings_are_named(run, message):
    with pytest.raises(LaunchError, match=message):
        launch_spec(run, "ssl_ops.train", "c.json", ["i.json"], "out")
    with pytest.raises(LaunchError, match="no shard index"):
        launch_spec(Torchrun(), "ssl_ops.train", "c.json", [], "out")


def test_no_training_argument_is_read_by_torchrun_as_one_of_its_own():
    """torchrun's argparse matches abbreviations anywhere in argv: an argument of ours that is a prefix of one of
    its options is taken (or refused as ambiguous) before the module sees it."""
    import argparse
    from unittest import mock

    from torch.distributed.run import get_args_parser

    argv = train_args("c.json", ["i.json"], "out", 10, monitor="out/probe.npz")
    ours = [a for a in argv if a.startswith("--")]
    theirs = [o for act in get_args_parser()._actions for o in act.option_strings if o.startswith("--")]
    assert not [(a, t) for a in ours for t in theirs if t.startswith(a)]
    with mock.patch.object(argparse.ArgumentParser, "exit", side_effect=SystemExit):
        ns = get_args_parser().parse_args(["--standalone", "-m", "ssl_ops.train", *argv])
    assert ns.training_script_args == argv
