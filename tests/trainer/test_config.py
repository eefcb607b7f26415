import pytest

from trainer.config import CONFIG_DIR, FitConfig, load_config, to_dict
from trainer.data import get_tasks
from trainer.errors import TrainerError


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert isinstance(cfg, FitConfig) and cfg.name == name
    get_tasks(cfg.data.tasks, cfg.data.dataset)


def test_overrides_apply_with_types():
    cfg = load_config("tiny", ["train.edge.steps=3", "method.tau=0.25", "data.tasks=[semseg, depth]"])
    assert cfg.train.edge.steps == 3 and cfg.method.tau == 0.25
    assert cfg.data.tasks == ("semseg", "depth")


def test_unknown_key_names_the_key_and_valid_ones(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  edge: {stepz: 3}\n")
    with pytest.raises(TrainerError, match=r"bad.yaml.train.edge: unknown key\(s\) \['stepz'\].*'steps'"):
        load_config(str(bad))


def test_wrong_types_and_missing_config(tmp_path):
    with pytest.raises(TrainerError, match="expected int, found 'many'"):
        load_config("tiny", ["train.edge.steps=many"])
    with pytest.raises(TrainerError, match="shipped configs are .*scenes3"):
        load_config("no-such-config")
    with pytest.raises(TrainerError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_dirichlet_concentrations_must_be_positive():
    with pytest.raises(TrainerError, match=r"method.edge_dirichlet: expected a Dirichlet concentration > 0, found 0.0"):
        load_config("tiny", ["method.edge_dirichlet=0.0"])
    assert load_config("tiny", ["method.edge_dirichlet=1.0"]).method.edge_dirichlet == 1.0


def test_wrong_task_names_are_listed():
    with pytest.raises(TrainerError, match=r"unknown task\(s\) \['deph'\] for dataset 'scenes'; its tasks are"):
        get_tasks(["semseg", "deph"])


def test_to_dict_round_trips():
    from trainer.config import from_dict

    cfg = load_config("scenes5")
    assert from_dict(FitConfig, to_dict(cfg)) == cfg
