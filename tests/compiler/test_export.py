import onnx
import torch
from torch import nn

from compiler.export import export_graph


class TwinBiases(nn.Module):
    """Two convs whose biases are identical (zero): the case the TorchScript
    exporter's default pass would merge into one initializer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 1)
        with torch.no_grad():
            self.a.bias.zero_()
            self.b.bias.zero_()
            self.b.weight.copy_(torch.eye(4).view(4, 4, 1, 1))

    def forward(self, x):
        y = self.a(x)
        return y, self.b(y)


def test_every_parameter_is_its_own_named_initializer(tmp_path):
    info = export_graph(TwinBiases(), (3, 8, 8), ["first", "second"], tmp_path / "g.onnx")
    model = onnx.load(tmp_path / "g.onnx")
    inits = [i.name for i in model.graph.initializer]
    assert sorted(inits) == sorted(info.weight_names) == ["a.bias", "a.weight", "b.bias", "b.weight"]
    assert [i.name for i in model.graph.input] == ["image"]  # weights are constants, not inputs
    assert [o.name for o in model.graph.output] == ["first", "second"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 8, 8]


def test_fp16_graph_keeps_names_and_fp32_io(tmp_path):
    info = export_graph(TwinBiases(), (3, 8, 8), ["first", "second"], tmp_path / "g.onnx", precision="fp16")
    model = onnx.load(tmp_path / "g.onnx")
    assert sorted(i.name for i in model.graph.initializer) == sorted(info.weight_names)
    assert {i.data_type for i in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert list(tmp_path.iterdir()) == [tmp_path / "g.onnx"]  # no temp files left
