"""The former home of :class:`GlobalForecaster`, kept so old imports work: it lives in
:mod:`numrnn.forecast.global_model` and is imported as ``from numrnn.forecast import GlobalForecaster``."""

from numrnn.forecast.global_model import GlobalForecaster

__all__ = ["GlobalForecaster"]
