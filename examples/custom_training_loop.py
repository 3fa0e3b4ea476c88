"""Train a GRU + Linear stack by hand: Adam, gradient clipping and truncated BPTT.

The task: read a long noisy signal (two sines) one step at a time and predict the next value.
The 3 000-step sequences are cut into chunks of K steps; each chunk starts from the state the
previous one ended in (the state is carried), but gradients stop at chunk borders (truncated
BPTT).  Everything is explicit, so this loop is the template for your own models.

    python examples/custom_training_loop.py
"""

from __future__ import annotations

import numpy as np

import numrnn
from numrnn import nn
from numrnn.losses import MSELoss
from numrnn.optim import Adam, clip_grad_norm

STEPS, BATCH, K, EPOCHS = 3000, 8, 50, 5


def make_data(rng):
    t = np.arange(STEPS + 1)[:, None] + rng.uniform(0, 100, size=(1, BATCH))  # random phase per sequence
    signal = np.sin(2 * np.pi * t / 40) + 0.5 * np.sin(2 * np.pi * t / 13) + 0.1 * rng.normal(size=t.shape)
    x = signal[:-1, :, None]  # (T, B, 1): the value now
    target = signal[1:, :, None]  # (T, B, 1): the value next
    return x, target


def main():
    rng = np.random.default_rng(0)
    x, target = make_data(rng)
    model = nn.Sequential(numrnn.GRU(1, 32, dtype=np.float32, seed=0), nn.Linear(32, 1, dtype=np.float32, seed=1))
    loss = MSELoss()
    optimizer = Adam(lr=3e-3)

    print(f"predicting the next value; variance of the target {target.var():.3f}")
    for epoch in range(EPOCHS):
        states = None  # every epoch starts the sequences from a zero state
        total, norms = 0.0, []
        for start in range(0, STEPS, K):
            chunk, chunk_target = x[start : start + K], target[start : start + K]
            model.zero_grad()
            out = model(chunk, states=states)  # (K, B, 1)
            value, grad = loss(out, chunk_target)
            model.backward(grad)  # gradients stay within this chunk
            norms.append(clip_grad_norm(model.grads, max_norm=1.0))
            optimizer.step(model.params, model.grads)  # in place
            states = model.states  # carry the state (values only) to the next chunk
            total += value * len(chunk)
        print(f"epoch {epoch + 1}: mse {total / STEPS:.4f}  (median grad norm before clipping {np.median(norms):.3f})")

    # the same thing in one call per epoch: numrnn.train.tbptt(model, x, target, k=K, optimizer=optimizer)
    model.eval()
    mse_model = loss(model(x), target)[0]
    mse_persist = loss(x, target)[0]  # "tomorrow equals today"
    print(f"final mse {mse_model:.4f} vs {mse_persist:.4f} for repeating the last value")


if __name__ == "__main__":
    main()
