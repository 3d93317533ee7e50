"""giqa.train: config defaults (the paper's), config files, record reading, the task-mixing sampler."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from giqa import Sample, Task, VqaKind
from giqa.errors import GiqaError, ImageError, ParseError
from giqa.train import DataSource, TrainConfig, TrainConfigError, load_config
from giqa.train.data import Conversation, SftDataset, TaskMixSampler, conversation_from_llava, read_conversations


def _cfg(tmp_path, **kw):
    return TrainConfig(data=[tmp_path / "d.jsonl"], image_root=tmp_path, output_dir=tmp_path / "out", **kw)


class TestConfig:
    def test_defaults_are_the_papers(self, tmp_path):
        cfg = _cfg(tmp_path)
        assert (cfg.adam_beta1, cfg.adam_beta2) == (0.9, 0.999)
        assert cfg.learning_rate == 2e-5
        assert cfg.lr_scheduler == "cosine"
        assert cfg.warmup_ratio == 0.03
        assert cfg.global_batch_size == 64
        assert cfg.num_epochs == 2
        assert cfg.finetune == "full"
        assert cfg.precision == "auto"
        assert cfg.max_steps is None and cfg.task_weights is None
        assert cfg.model == "llava-hf/llava-1.5-7b-hf"
        assert not cfg.train_vision_tower
        assert cfg.lora.r == 128 and cfg.lora.alpha == 256

    @pytest.mark.parametrize(("per_device", "world", "accum"), [(16, 1, 4), (16, 4, 1), (8, 2, 4), (64, 1, 1)])
    def test_gradient_accumulation_reaches_the_global_batch(self, tmp_path, per_device, world, accum):
        cfg = _cfg(tmp_path, per_device_batch_size=per_device)
        assert cfg.gradient_accumulation_steps(world) == accum
        assert accum * per_device * world == 64

    def test_global_batch_must_divide(self, tmp_path):
        with pytest.raises(TrainConfigError, match="not a multiple"):
            _cfg(tmp_path, per_device_batch_size=12).gradient_accumulation_steps()

    @pytest.mark.parametrize(
        "bad",
        [
            {"learning_rate": 0},
            {"warmup_ratio": 1.0},
            {"adam_beta2": 1.0},
            {"task_weights": {"des": -1.0, "vqa": 1.0}},
            {"task_weights": {"des": 0.0, "vqa": 0.0}},
            {"finetune": "qlora"},
            {"finetune": "lora", "train_vision_tower": True},
            {"lerning_rate": 1e-4},  # typo: extra keys are refused
            {"lora": {"target_modules": ["q_proj; rm -rf"]}},
        ],
    )
    def test_bad_values_refused(self, tmp_path, bad):
        with pytest.raises(ValueError):
            _cfg(tmp_path, **bad)

    def test_json_and_yaml_files_resolve_paths_against_the_file(self, tmp_path):
        body = {
            "model": "m",
            "data": ["a.jsonl", {"path": "b.json", "task": "vqa"}],
            "image_root": "imgs",
            "output_dir": "runs/x",
            "task_weights": {"des": 2, "vqa": 1},
        }
        (tmp_path / "c.json").write_text(json.dumps(body))
        yaml = pytest.importorskip("yaml")
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(body))
        for name in ("c.json", "c.yaml"):
            cfg = load_config(tmp_path / name)
            assert cfg.data[0].path == tmp_path / "a.jsonl" and cfg.data[0].task is None
            assert cfg.data[1] == DataSource(path=tmp_path / "b.json", task=Task.vqa)
            assert cfg.image_root == tmp_path / "imgs"
            assert cfg.output_dir == tmp_path / "runs/x"
            assert cfg.task_weights == {Task.des: 2.0, Task.vqa: 1.0}
        assert load_config(tmp_path / "c.json", max_steps=7).max_steps == 7

    def test_config_round_trips_through_its_saved_file(self, tmp_path):
        cfg = _cfg(tmp_path, task_weights={"des": 1, "vqa": 3}, finetune="lora")
        path = cfg.save(tmp_path / "out")
        assert path.name == "giqa_train_config.json"
        again = TrainConfig.model_validate_json(path.read_text())
        assert again == cfg and again.changes_from(cfg) == []
        assert cfg.model_copy(update={"seed": 1}).changes_from(cfg) == ["seed"]

    @pytest.mark.parametrize(
        ("name", "text", "match"),
        [
            ("c.json", "{not json", "not valid JSON"),
            ("c.yaml", "a: [1, 2", "not valid YAML"),
            ("c.toml", "x = 1", "must end in"),
            ("c.json", "[1, 2]", "mapping"),
            ("c.json", '{"data": ["a.jsonl"]}', "image_root"),
        ],
    )
    def test_bad_config_files(self, tmp_path, name, text, match):
        (tmp_path / name).write_text(text)
        with pytest.raises(TrainConfigError, match=match) as info:
            load_config(tmp_path / name)
        assert isinstance(info.value, GiqaError) and isinstance(info.value, ValueError)

    def test_missing_file(self, tmp_path):
        with pytest.raises(TrainConfigError, match="cannot read"):
            load_config(tmp_path / "nope.json")

    def test_import_is_light(self):
        code = "import sys, giqa.train, giqa.train.data; print('torch' in sys.modules, 'transformers' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "False False"


# -- records -------------------------------------------------------------------------------
def _sample(i: int, task: Task = Task.des) -> Sample:
    return Sample(
        id=f"s{i}",
        image=f"img/{i}.png",
        task=task,
        question="Is the [dog](<142, 309>) clear?" if task is Task.vqa else "Describe the quality.",
        answer="No." if task is Task.vqa else "The [dog](<142, 309>) is blurry.",
        vqa_kind=VqaKind.yes_no if task is Task.vqa else None,
    )


def _llava(i: int, **extra) -> dict:
    return {
        "id": f"l{i}",
        "image": f"img/{i}.png",
        "conversations": [
            {"from": "human", "value": "Rate the quality.\n<image>"},
            {"from": "gpt", "value": "Poor."},
            {"from": "human", "value": "Why?"},
            {"from": "gpt", "value": "The sky is overexposed."},
        ],
        **extra,
    }


class TestRecords:
    def test_samples_and_llava_records_in_one_jsonl(self, tmp_path):
        lines = [_sample(0).model_dump_json(), json.dumps(_llava(1, task="vqa")), "", json.dumps(_llava(2))]
        (tmp_path / "d.jsonl").write_text("\n".join(lines))
        convs = read_conversations(tmp_path / "d.jsonl", task="vqa")
        assert [c.id for c in convs] == ["s0", "l1", "l2"]
        assert convs[0].turns == (("user", "Describe the quality."), ("assistant", "The [dog](<142, 309>) is blurry."))
        assert convs[0].task is Task.des
        assert convs[1].turns[0] == ("user", "Rate the quality.")  # placeholder removed, image goes first
        assert [r for r, _ in convs[1].turns] == ["user", "assistant", "user", "assistant"]
        assert convs[1].task is Task.vqa and convs[2].task is Task.vqa  # record field, then source default
        msgs = convs[1].messages()
        assert msgs[0]["content"][0] == {"type": "image"}
        assert all(part["type"] == "text" for m in msgs[1:] for part in m["content"])

    def test_json_list_and_default_task(self, tmp_path):
        (tmp_path / "d.json").write_text(json.dumps([_llava(0), _sample(1, Task.vqa).model_dump(mode="json")]))
        convs = read_conversations(tmp_path / "d.json")
        assert [c.task for c in convs] == [Task.des, Task.vqa]

    @pytest.mark.parametrize(
        ("record", "match"),
        [
            ({"id": "x", "image": "a.png", "conversations": [{"from": "human", "value": "<image>hi"}]}, "ends with a user turn"),
            ({"id": "x", "image": "a.png", "conversations": [{"from": "gpt", "value": "hi"}]}, "expected 'user'"),
            ({"id": "x", "image": "a.png", "conversations": [{"from": "bot", "value": "hi"}]}, "expected human or gpt"),
            ({"id": "x", "image": "a.png", "conversations": [{"from": "human", "value": "<image><image>q"}, {"from": "gpt", "value": "a"}]}, "more than one"),
            ({"id": "x", "image": "a.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "see <image>"}]}, "extra '<image>'"),
            ({"id": "x", "image": "a.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}]}, "empty answer"),
            ({"id": "x", "image": None, "conversations": []}, "one relative path"),
            ({"id": "x", "conversations": []}, "missing"),
            ({"id": "x", "image": "a.png", "conversations": [], "task": "caption"}, "non-empty"),
        ],
    )
    def test_bad_llava_records(self, record, match):
        with pytest.raises(ParseError, match=match):
            conversation_from_llava(record)

    def test_errors_name_file_and_line(self, tmp_path):
        good = _sample(0).model_dump_json()
        (tmp_path / "d.jsonl").write_text(good + "\n{oops\n")
        with pytest.raises(ParseError, match=r"d\.jsonl.*line 2"):
            read_conversations(tmp_path / "d.jsonl")
        (tmp_path / "e.jsonl").write_text(good + "\n" + json.dumps({"id": "q", "image": "a.png"}) + "\n")
        with pytest.raises(ParseError, match=r"e\.jsonl:2: not a giqa Sample"):
            read_conversations(tmp_path / "e.jsonl")
        (tmp_path / "g.jsonl").write_text(good + "\n\n\n" + json.dumps([1, 2]) + "\n")  # blank lines count
        with pytest.raises(ParseError, match=r"g\.jsonl:4: a record must be a JSON object"):
            read_conversations(tmp_path / "g.jsonl")
        (tmp_path / "f.csv").write_text("a,b")
        with pytest.raises(ParseError, match="must be .jsonl, .json, .parquet or a datasets folder"):
            read_conversations(tmp_path / "f.csv")

    def test_dataset_checks_images_up_front_and_confines_them(self, tmp_path):
        (tmp_path / "img").mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / "0.png")
        conv = Conversation("a", "img/0.png", Task.des, (("user", "q"), ("assistant", "a")))
        ds = SftDataset([conv], tmp_path)
        item = ds[0]
        assert item["conversation"] is conv and item["image"].mode == "RGB" and item["image"].size == (8, 8)
        with pytest.raises(ImageError, match="not found"):
            SftDataset([conv, Conversation("b", "img/1.png", Task.des, conv.turns)], tmp_path)
        with pytest.raises(ImageError, match="escapes"):
            SftDataset([Conversation("c", "../outside.png", Task.des, conv.turns)], tmp_path / "img")
        with pytest.raises(ParseError, match="duplicate"):
            SftDataset([conv, conv], tmp_path)


# -- sampler -------------------------------------------------------------------------------
class TestTaskMixSampler:
    def test_unweighted_is_a_seeded_permutation_per_epoch(self):
        tasks = [Task.des] * 30 + [Task.vqa] * 10
        s = TaskMixSampler(tasks, seed=3)
        e0 = list(s)
        assert sorted(e0) == list(range(40)) and len(s) == 40
        assert list(TaskMixSampler(tasks, seed=3)) == e0
        s.set_epoch(1)
        e1 = list(s)
        assert sorted(e1) == list(range(40)) and e1 != e0
        assert list(TaskMixSampler(tasks, seed=4)) != e0

    def test_weights_set_each_tasks_share(self):
        tasks = [Task.des] * 100 + [Task.vqa] * 300
        s = TaskMixSampler(tasks, {"des": 1, "vqa": 1}, seed=0)
        assert len(s) == 400 and s.quotas() == {Task.des: 200, Task.vqa: 200}
        counts = Counter()
        for epoch in range(5):
            s.set_epoch(epoch)
            idx = list(s)
            per_task = Counter(tasks[i] for i in idx)
            assert per_task == {Task.des: 200, Task.vqa: 200}
            vqa = [i for i in idx if tasks[i] is Task.vqa]
            assert len(set(vqa)) == 200  # drawn without replacement inside the larger task
            des = Counter(i for i in idx if tasks[i] is Task.des)
            assert set(des.values()) == {2}  # the smaller task cycles: every sample exactly twice
            counts.update(idx)
        # within a task the draw is uniform: each VQA sample at most once an epoch, spread like a binomial
        vqa_counts = np.array([counts[i] for i in range(100, 400)])
        assert vqa_counts.max() <= 5 and abs(vqa_counts.mean() - 200 * 5 / 300) < 1e-9
        assert 0.7 < vqa_counts.std() < 1.4  # Binomial(5, 2/3) has std 1.05

    def test_weighted_order_is_shuffled_and_seeded(self):
        tasks = [Task.des] * 50 + [Task.vqa] * 50
        a = list(TaskMixSampler(tasks, {"des": 3, "vqa": 1}, seed=1))
        assert a == list(TaskMixSampler(tasks, {"des": 3, "vqa": 1}, seed=1))
        first_half = Counter(tasks[i] for i in a[:50])
        assert 25 <= first_half[Task.des] <= 49  # mixed through the epoch, not task blocks

    def test_zero_weight_leaves_a_task_out(self):
        tasks = [Task.des] * 5 + [Task.vqa] * 7
        s = TaskMixSampler(tasks, {"des": 0, "vqa": 1}, seed=0)
        assert len(s) == 7 and sorted(s) == list(range(5, 12))

    @pytest.mark.parametrize(
        ("weights", "match"),
        [
            ({"des": 1}, "no weight for it"),
            ({"des": 1, "vqa": -2}, ">= 0"),
            ({"des": 0, "vqa": 0}, "must be > 0"),
        ],
    )
    def test_bad_weights(self, weights, match):
        with pytest.raises(ValueError, match=match):
            TaskMixSampler([Task.des, Task.vqa], weights)

    def test_weight_for_an_absent_task(self):
        with pytest.raises(ValueError, match="holds no vqa samples"):
            TaskMixSampler([Task.des, Task.des], {"des": 1, "vqa": 1})

    @settings(max_examples=60, deadline=None)
    @given(
        n_des=st.integers(1, 40),
        n_vqa=st.integers(1, 40),
        w_des=st.floats(0.01, 10),
        w_vqa=st.floats(0.01, 10),
        seed=st.integers(0, 2**31),
    )
    def test_counts_follow_the_weights(self, n_des, n_vqa, w_des, w_vqa, seed):
        tasks = [Task.des] * n_des + [Task.vqa] * n_vqa
        s = TaskMixSampler(tasks, {"des": w_des, "vqa": w_vqa}, seed=seed)
        idx = list(s)
        assert len(idx) == n_des + n_vqa and all(0 <= i < len(tasks) for i in idx)
        got = sum(tasks[i] is Task.des for i in idx)
        exact = w_des / (w_des + w_vqa) * len(idx)
        assert abs(got - exact) < 1.0

    def test_statistically_over_seeds(self):
        # the share of DES among the first 20 indices of an epoch, over many seeds, is the weight
        tasks = [Task.des] * 60 + [Task.vqa] * 60
        shares = [
            np.mean([tasks[i] is Task.des for i in list(TaskMixSampler(tasks, {"des": 1, "vqa": 3}, seed=s))[:20]])
            for s in range(300)
        ]
        assert abs(np.mean(shares) - 0.25) < 0.02


class TestOptionsAndExports:
    def test_llava15_lora_recipe_fills_unset_fields_only(self, tmp_path):
        cfg = _cfg(tmp_path, recipe="llava-1.5-lora")
        assert (cfg.finetune, cfg.learning_rate, cfg.projector_learning_rate) == ("lora", 2e-4, 2e-5)
        assert (cfg.lora.r, cfg.lora.alpha) == (128, 256)
        assert _cfg(tmp_path, recipe="llava-1.5-lora", learning_rate=1e-4).learning_rate == 1e-4
        with pytest.raises(ValueError):
            _cfg(tmp_path, recipe="llava-9")

    def test_new_options_validate(self, tmp_path):
        cfg = _cfg(tmp_path, image_aspect="crop", report_to="tensorboard", eval_data=str(tmp_path / "e.jsonl"), eval_steps=5)
        assert cfg.image_aspect == "crop" and cfg.eval_data[0].path == tmp_path / "e.jsonl"
        for bad in ({"image_aspect": "stretch"}, {"report_to": "mlflow"}, {"eval_steps": 5}, {"attn_implementation": "magic"}):
            with pytest.raises(ValueError):
                _cfg(tmp_path, **bad)

    @pytest.mark.parametrize("fmt, name", [("jsonl", "x.jsonl"), ("llava", "x.json"), ("parquet", "x.parquet"), ("hf", "x_hf")])
    def test_every_export_format_reads_back(self, tmp_path, fmt, name):
        if fmt in ("parquet", "hf"):
            pytest.importorskip("pyarrow")
        if fmt == "hf":
            pytest.importorskip("datasets")
        from giqa.data.writers import export_samples

        samples = [_sample(i) for i in range(3)]
        path = export_samples(samples, tmp_path / name, to=fmt)
        convs = read_conversations(path)
        assert [c.id for c in convs] == ["s0", "s1", "s2"]
        assert [c.turns for c in convs] == [
            (("user", s.question.strip()), ("assistant", s.answer.strip())) for s in samples
        ]

    def test_grouped_sampler_keeps_the_epoch_and_groups_by_task_and_length(self):
        tasks = ["des"] * 8 + ["vqa"] * 8
        lengths = [100 + i for i in range(8)] + [10 + i for i in range(8)]
        plain = list(TaskMixSampler(tasks, seed=3))
        grouped = list(TaskMixSampler(tasks, seed=3, lengths=lengths, group_size=4))
        assert sorted(grouped) == sorted(plain) == list(range(16))
        for start in range(0, 16, 4):
            group = grouped[start : start + 4]
            assert len({tasks[i] for i in group}) == 1  # one modality (task) per global micro-batch
            assert [lengths[i] for i in group] == sorted((lengths[i] for i in group), reverse=True)
        assert grouped == list(TaskMixSampler(tasks, seed=3, lengths=lengths, group_size=4))  # seeded


class TestIncompleteCheckpoints:
    def test_a_checkpoint_cut_off_mid_save_is_skipped(self, tmp_path, caplog):
        from giqa.train.trainer import last_checkpoint

        for step, complete in ((2, True), (4, True), (6, False)):
            ckpt = tmp_path / f"checkpoint-{step}"
            ckpt.mkdir()
            (ckpt / "model.safetensors").write_bytes(b"")
            if complete:
                (ckpt / "trainer_state.json").write_text('{"global_step": %d}' % step)
        with caplog.at_level("WARNING"):
            assert last_checkpoint(tmp_path).name == "checkpoint-4"
        assert "checkpoint-6" in caplog.text and "trainer_state.json" in caplog.text
        (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()
        assert last_checkpoint(tmp_path).name == "checkpoint-2"
