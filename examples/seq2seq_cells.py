"""A tiny encoder-decoder that learns to reverse digit strings, with a decoder written as a loop of
``numrnn.nn.LSTMCell`` calls that feeds its own predictions back.

The encoder is a ``numrnn.LSTM`` layer that reads the string; its final state starts the
decoder, an ``LSTMCell`` called once per output digit.  The decoder's input at each step is the
digit it should have written at the step before (teacher forcing) or, for half of the batches
and always at test time, the digit it *did* write (feedback), as in PyTorch's seq2seq tutorial.
Training backpropagates through the decoder loop with one ``backward`` call per step, in
reverse, then through the encoder from the gradient of its final state.

    python examples/seq2seq_cells.py
"""

from __future__ import annotations

import time

import numpy as np

import numrnn
from numrnn import nn
from numrnn.losses import CrossEntropyLoss
from numrnn.optim import Adam, clip_grad_norm

DIGITS, LENGTH, HIDDEN, BATCH, STEPS = 10, 6, 64, 64, 1500
START = DIGITS  # the decoder's first input: a "start" token after the ten digits
DTYPE = np.float32


def one_hot(tokens, size):
    """(..., ) integers -> (..., size) one-hot rows."""
    return np.eye(size, dtype=DTYPE)[tokens]


def batch_of_strings(rng, batch):
    """Random digit strings (T, B) and their reversals."""
    digits = rng.integers(0, DIGITS, size=(LENGTH, batch))
    return digits, digits[::-1].copy()


class Seq2Seq:
    def __init__(self, seed=0):
        self.encoder = numrnn.LSTM(DIGITS, HIDDEN, dtype=DTYPE, seed=seed)
        self.decoder = nn.LSTMCell(DIGITS + 1, HIDDEN, dtype=DTYPE, seed=seed + 1)
        self.head = nn.Linear(HIDDEN, DIGITS, dtype=DTYPE, seed=seed + 2)
        self.parts = {"encoder": self.encoder, "decoder": self.decoder, "head": self.head}

    @property
    def params(self):
        return {f"{p}.{k}": v for p, m in self.parts.items() for k, v in m.params.items()}

    @property
    def grads(self):
        return {f"{p}.{k}": v for p, m in self.parts.items() for k, v in m.grads.items()}

    def zero_grad(self):
        for m in self.parts.values():
            m.zero_grad()

    def run(self, digits, targets=None, rng=None, teacher_forcing=0.0):
        """Encode ``digits`` (T, B), then decode T digits.  At each step the decoder reads the
        target digit of the step before with probability ``teacher_forcing`` (for the whole
        batch), else its own prediction.  Returns the logits (T, B, DIGITS) and the decoder's
        outputs h_t (T, B, H)."""
        _, (h_n, c_n) = self.encoder(one_hot(digits, DIGITS))
        state = (h_n[0], c_n[0])
        token = np.full(digits.shape[1], START)
        hs, logits = [], []
        for t in range(LENGTH):
            state = self.decoder(one_hot(token, DIGITS + 1), state)
            h = state[0]
            step_logits = h @ self.head.params["weight"].T + self.head.params["bias"]
            hs.append(h)
            logits.append(step_logits)
            forced = targets is not None and rng.random() < teacher_forcing
            token = targets[t] if forced else step_logits.argmax(axis=1)  # feedback: no gradient
        return np.stack(logits), np.stack(hs)


def train_step(model, loss, optimizer, rng):
    digits, targets = batch_of_strings(rng, BATCH)
    model.zero_grad()
    _, hs = model.run(digits, targets, rng, teacher_forcing=0.5)
    logits = model.head(hs)  # the head once over all steps (T, B, H), for its backward
    value, grad = loss(logits, targets)
    dh_out = model.head.backward(grad)  # (T, B, H): the loss's gradient of each h_t
    # the decoder loop in reverse: each step's h gets the loss's gradient plus what flows back
    # from the next step's state (here model.decoder.backward_all(dh_out) would do the same,
    # as the fed-back predictions carry no gradient)
    dh = dc = None
    for t in reversed(range(LENGTH)):
        _, (dh, dc) = model.decoder.backward(dh_out[t] if dh is None else dh_out[t] + dh, dc)
    # (dh, dc) is now the gradient of the encoder's final state
    model.encoder.backward(np.zeros((LENGTH, BATCH, HIDDEN), DTYPE), (dh[None], dc[None]))
    clip_grad_norm(model.grads, 1.0)
    optimizer.step(model.params, model.grads)
    return value


def evaluate(model, rng, count=2000):
    """Greedy decoding with feedback only; the cells save nothing in eval mode."""
    model.decoder.eval()
    digits, targets = batch_of_strings(rng, count)
    logits, _ = model.run(digits)
    model.decoder.train()
    predicted = logits.argmax(axis=2)
    return (predicted == targets).mean(), (predicted == targets).all(axis=0).mean()


def main():
    rng = np.random.default_rng(0)
    model = Seq2Seq(seed=0)
    loss = CrossEntropyLoss()
    optimizer = Adam(lr=1e-2)
    start = time.perf_counter()
    for step in range(1, STEPS + 1):
        if step == 2 * STEPS // 3:
            optimizer.lr = 2e-3  # a smaller step for the last third
        value = train_step(model, loss, optimizer, rng)
        if step % 300 == 0:
            digit_acc, string_acc = evaluate(model, np.random.default_rng(step))
            print(f"step {step}: loss {value:.4f}, test accuracy {digit_acc:.1%} of digits, "
                  f"{string_acc:.1%} of strings  ({time.perf_counter() - start:.0f} s)")
    digit_acc, string_acc = evaluate(model, np.random.default_rng(12345), count=5000)
    print(f"reversing {LENGTH}-digit strings, greedy decoding with feedback on 5000 new strings: "
          f"accuracy {digit_acc:.2%} of digits, {string_acc:.2%} of whole strings")


if __name__ == "__main__":
    main()
