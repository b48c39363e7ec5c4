"""Layer and stage tables (torchinfo underneath) and the paper's published numbers."""
import pytest

import resnet_core as rc


@pytest.mark.parametrize("name", ["resnet20", "plain56", "resnet50", "resnet34"])
def test_layer_table_has_one_row_per_leaf_and_params_sum_to_the_model(name):
    model = rc.build_model(name)
    table = rc.layer_table(model)
    assert list(table.columns[:6]) == ["name", "kind", "stage", "output_shape", "params", "mult_adds"]
    leaves = {n for n, m in model.named_modules() if not list(m.children()) and n}
    assert set(table["name"]) == leaves and len(table) == len(leaves)
    assert table["params"].sum() == rc.count_parameters(model)


def test_layer_table_rows_follow_the_forward_pass():
    table = rc.layer_table(rc.build_model("resnet20"))
    assert table["name"].iloc[:3].tolist() == ["conv1", "bn1", "relu"]
    assert table["name"].iloc[-3:].tolist() == ["avgpool", "flatten", "fc"]
    assert table.loc[table["name"] == "layer3.0.conv1", "output_shape"].item() == (64, 8, 8)
    # 3x3 conv, 16 -> 16 channels on 32x32: 16*16*9 weights, each used at 1,024 positions.
    assert table.loc[table["name"] == "layer1.0.conv1", "mult_adds"].item() == 16 * 16 * 9 * 32 * 32


def test_stage_table_rolls_up_to_table1_rows():
    model = rc.build_model("resnet152")
    layers = rc.layer_table(model)
    stages = rc.stage_table(model, layers)
    assert stages["stage"].tolist() == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "head"]
    assert stages["structure"][3] == "[1×1, 256 | 3×3, 256 | 1×1, 1024] × 36"
    assert stages["params"].sum() == layers["params"].sum()
    assert stages["mult_adds"].sum() == layers["mult_adds"].sum()


def test_layer_table_at_another_input_size_and_activation_memory():
    model = rc.build_model("resnet18")
    small = rc.layer_table(model, input_size=64)
    assert small["output_shape"].iloc[-1] == (1000,)
    assert small.loc[small["name"] == "layer4.1.conv2", "output_shape"].item() == (512, 2, 2)
    assert rc.activation_bytes(small, batch_size=8) == small["activations"].sum() * 8 * 4


def test_paper_facts_for_named_nets_only():
    facts = {(f.table, f.quantity): f.value for f in rc.paper_facts(rc.get_spec("resnet110"))}
    assert facts[("Table 6", "CIFAR-10 test error")] == 6.43
    resnet34_a = {f.table for f in rc.paper_facts(rc.get_spec("resnet34", shortcut="A"))}
    assert resnet34_a == {"Table 1", "Table 2", "Table 3"}
    assert rc.paper_facts(rc.get_spec("resnet20").replace(widths=(8, 16, 32))) == []
    assert rc.paper_facts(rc.get_spec("resnet50", variant="torchvision")) != []  # Table 3/4 errors still apply
