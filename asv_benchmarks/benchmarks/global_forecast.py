"""Benchmarks of ``numrnn.forecast.GlobalForecaster``: one model fitted across many series."""

import numpy as np

HORIZON = 12
SEASON = 12


def synthetic_panel(n_series, length=120, seed=0):
    """Fixed, seeded panel: positive seasonal sine + trend + noise series of ``length`` values."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = {}
    for i in range(n_series):
        level = rng.uniform(20, 200)
        y = (level + rng.normal(0, 0.003) * level * t
             + rng.uniform(0.05, 0.3) * level * np.sin(2 * np.pi * t / SEASON + rng.uniform(0, 2 * np.pi))
             + rng.uniform(0.02, 0.08) * level * rng.normal(size=length))
        out[f"s{i}"] = np.maximum(y, 1.0)
    return out


class GlobalForecasterSuite:
    """``GlobalForecaster.fit`` / ``predict`` at 100 and 1,000 series, and the accuracy on a fixed panel.

    The fit is kept short (``epochs=5``, ``steps_per_epoch=20``, one member) so a sample takes
    seconds; the training cost per epoch does not grow with the number of series (a fixed number of
    mini-batches), the validation pass and ``predict`` do, linearly.
    """

    params = [100, 1000]
    param_names = ["n_series"]
    rounds = 1
    repeat = (1, 3, 30.0)
    number = 1
    warmup_time = 0.0
    timeout = 300

    def setup(self, n_series):
        try:
            from numrnn.forecast import GlobalForecaster  # noqa: F401
        except ImportError as exc:
            raise NotImplementedError(f"numrnn.forecast.GlobalForecaster is not available: {exc}") from exc
        data = synthetic_panel(n_series)
        self.train = {k: v[:-HORIZON] for k, v in data.items()}
        self.test = {k: v[-HORIZON:] for k, v in data.items()}
        # Compile (or load from the cache) the kernels fit and predict run; keep the model for predict.
        self.model = self.make()
        self.model.fit(self.train, progress=False)
        self.model.predict(level=[80, 95])

    @staticmethod
    def make():
        from numrnn.forecast import GlobalForecaster

        return GlobalForecaster(horizon=HORIZON, season_length=SEASON, seed=0, ensemble=1, epochs=5,
                                steps_per_epoch=20)

    def time_fit(self, n_series):
        self.make().fit(self.train, progress=False)

    def time_predict(self, n_series):
        self.model.predict(level=[80, 95])

    def peakmem_fit_predict(self, n_series):
        self.make().fit(self.train, progress=False).predict(level=[80, 95])

    def track_mase(self, n_series):
        """Geometric mean over series of MASE(model) / MASE(seasonal naive) on the held-out horizon
        (series that seasonal naive forecasts exactly, whose ratio is undefined, left out)."""
        from numrnn import metrics

        fc = self.model.predict()
        ratios = []
        for k, y in self.train.items():
            ours = metrics.mase(self.test[k], fc[k]["yhat"], y, m=SEASON)
            naive = metrics.mase(self.test[k], metrics.seasonal_naive(y, HORIZON, m=SEASON), y, m=SEASON)
            if naive > 0:
                ratios.append(max(ours, 1e-12) / naive)
        return float(np.exp(np.mean(np.log(ratios))))

    track_mase.unit = "MASE ratio"
