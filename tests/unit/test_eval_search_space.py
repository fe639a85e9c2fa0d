"""Search-space parsing (CLI flags and YAML) and trial concurrency, without Ray."""

import pytest

from fame_ray.downstream import search_space as sweep
from fame_ray.downstream.sweep import concurrent_trials
from fame_ray.errors import ConfigError


def test_flags_parse_every_kind():
    space = sweep.parse_search_flags(
        [
            "lr=loguniform(1e-3,1e-1)",
            "dropout=[0.5, 0.7]",
            "epochs=choice(3,4)",
            "weight_decay=uniform(0, 1e-3)",
        ]
    )
    assert space["lr"] == {"kind": "loguniform", "values": [0.001, 0.1]}
    assert space["dropout"] == {"kind": "grid", "values": [0.5, 0.7]}
    assert space["epochs"] == {"kind": "choice", "values": [3, 4]} and all(
        isinstance(v, int) for v in space["epochs"]["values"]
    )
    assert space["weight_decay"] == {"kind": "uniform", "values": [0.0, 0.001]}


def test_a_plain_number_is_a_fixed_value_and_a_later_flag_wins():
    space = sweep.parse_search_flags(["epochs=5", "epochs=7"])
    assert space == {"epochs": {"kind": "value", "values": [7]}}


def test_yaml_file_accepts_strings_lists_and_mappings(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "search_space:\n  lr: loguniform(1e-3, 1e-1)\n  dropout: [0.5, 0.7]\n  weight_decay: {choice: [0.0001, "
        "0.001]}\n  epochs: 4\n"
    )
    space = sweep.load_search_file(str(path))
    assert space["lr"]["kind"] == "loguniform"
    assert space["dropout"]["values"] == [0.5, 0.7]
    assert space["weight_decay"] == {"kind": "choice", "values": [0.0001, 0.001]}
    assert space["epochs"] == {"kind": "value", "values": [4]}
    assert sweep.normalise_space(space) == space  # the parsed form round-trips (config stores it)


@pytest.mark.parametrize(
    "flag",
    [
        "lr=loguniform(0,1)",  # log of zero
        "lr=loguniform(1e-1,1e-3)",  # low > high
        "lr=normal(0,1)",  # unknown distribution
        "lr=fast",  # not a number
        "lr=[0.1, abc]",
        "dropout=[0.5, 1.5]",  # out of range
        "epochs=[2.5]",  # not whole
        "learning_rate=0.1",  # unknown key (suggests lr)
        "lr",  # no '='
        "lr=uniform(1)",  # one bound
    ],
)
def test_bad_specs_are_one_line_config_errors(flag):
    with pytest.raises(ConfigError) as caught:
        sweep.parse_search_flags([flag])
    assert "\n" not in caught.value.one_line()


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError) as caught:
        sweep.parse_search_flags(["weight_decy=0.1"])
    assert "did you mean 'weight_decay'" in caught.value.one_line()


def test_grid_size_max_value_and_description():
    space = sweep.parse_search_flags(["lr=[0.1,0.2,0.3]", "dropout=[0.5,0.7]", "epochs=choice(3,9)"])
    assert sweep.grid_size(space) == 6
    assert sweep.max_value(space, "epochs", 1) == 9
    assert sweep.max_value(space, "weight_decay", 1e-4) == 1e-4
    assert sweep.describe_space(space) == {"lr": "[0.1, 0.2, 0.3]", "dropout": "[0.5, 0.7]", "epochs": "choice(3, 9)"}


def test_concurrency_counts_ray_data_cpus_too():
    # 2 CPUs, a trial = 1 worker x 1 CPU + 1 CPU for Ray Data: one trial at a time
    assert concurrent_trials(2, 0, 2.0, 0, wanted=4) == 1
    assert concurrent_trials(16, 0, 2.0, 0, wanted=4) == 4
    assert concurrent_trials(64, 4, 9.0, 2, wanted=8) == 2  # GPUs limit
    with pytest.raises(ConfigError):
        concurrent_trials(2, 0, 3.0, 0, wanted=1)
