"""Train a small LSTM to predict the next value of a noisy sine wave.

The whole training loop is written out by hand so that every step is visible:
numrnn's LSTM runs forward and backward (BPTT), a linear readout in plain NumPy
turns the last hidden state into a prediction, and plain SGD updates both.

Run:  python examples/quickstart.py
"""

import numpy as np

import numrnn

rng = np.random.default_rng(0)

# Data: windows of a noisy sine wave; the target is the value after each window.
steps, batch, hidden = 24, 32, 16
series = np.sin(0.3 * np.arange(4000)) + 0.1 * rng.normal(size=4000)


def sample_batch(size=batch):
    starts = rng.integers(0, len(series) - steps - 1, size=size)
    windows = np.stack([series[s:s + steps + 1] for s in starts], axis=1)  # (T + 1, B)
    return windows[:-1, :, None].astype(np.float32), windows[-1, :, None].astype(np.float32)


# Model: LSTM (T, B, 1) -> last hidden state (B, H) -> linear readout (B, 1).
lstm = numrnn.LSTM(input_size=1, hidden_size=hidden, seed=0)
readout_weight = rng.uniform(-0.25, 0.25, size=(hidden, 1)).astype(np.float32)
readout_bias = np.zeros(1, dtype=np.float32)
learning_rate = 0.2
recent = []

for step in range(1, 201):
    x, target = sample_batch()

    # forward
    y, (h_n, c_n) = lstm(x)
    last = h_n[-1]                                   # (B, H): top layer, last step
    prediction = last @ readout_weight + readout_bias
    error = prediction - target
    loss = float(np.mean(error ** 2))

    # backward: loss -> readout -> LSTM final state -> LSTM parameters
    d_prediction = 2.0 * error / error.size
    d_readout_weight = last.T @ d_prediction
    d_readout_bias = d_prediction.sum(axis=0)
    dh_n = np.zeros_like(h_n)
    dh_n[-1] = d_prediction @ readout_weight.T
    lstm.zero_grad()
    lstm.backward(np.zeros_like(y), (dh_n, None))    # y itself is not used by the loss

    # plain SGD, in place
    for name, value in lstm.params.items():
        value -= learning_rate * lstm.grads[name]
    readout_weight -= learning_rate * d_readout_weight
    readout_bias -= learning_rate * d_readout_bias

    recent.append(loss)
    if step % 25 == 0:
        print(f"step {step:4d}   training mse {np.mean(recent):.4f}")
        recent = []

# Evaluate on fresh windows, next to the naive forecast "the next value equals the last".
lstm.eval()
x, target = sample_batch(2000)
_, (h_n, _) = lstm(x)
test_mse = float(np.mean((h_n[-1] @ readout_weight + readout_bias - target) ** 2))
naive_mse = float(np.mean((x[-1] - target) ** 2))
print(f"test mse {test_mse:.4f}   (repeat-last-value forecast: {naive_mse:.4f}; "
      f"the noise alone: 0.0100)")
