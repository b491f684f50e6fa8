"""A booster's log-odds for one row, through LightGBM's single-row C API.

An HTTP request scores one transaction. ``Booster.predict`` on one row spends ~60–80 µs in
Python (argument checks, a ``ctypes`` array per call, a result array sized for many rows)
around a few µs of tree walking; LightGBM's C API has a path made for this case:
``LGBM_BoosterPredictForMatSingleRowFastInit`` parses the prediction settings once into a
handle, and ``LGBM_BoosterPredictForMatSingleRowFast`` then scores one row with it. Same
trees, same code inside LightGBM: the value is the one ``predict`` gives, bit for bit
(``tests/models/test_onerow.py``).

The handle is made on first use and freed with the object. One call at a time per handle
(a lock: the API's scoring thread and a drift or explanation thread may share a model).
"""

from __future__ import annotations

import ctypes
import threading
import weakref

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _safe_call
from lightgbm.libpath import _LIB
from numpy.typing import NDArray

F64 = NDArray[np.float64]
C_API_DTYPE_FLOAT64 = 1
C_API_PREDICT_RAW_SCORE = 1
ROW_MAJOR = 1


class OneRow:
    """``booster.predict(x, raw_score=True)`` for ``x`` of one row of ``columns`` values."""

    def __init__(self, booster: lgb.Booster, columns: int) -> None:
        self.booster = booster  # the handle points into it: keep it alive as long
        self.columns = columns
        self._lock = threading.Lock()
        self._handle = ctypes.c_void_p()
        self._length = ctypes.c_int64(0)
        self._out = np.zeros(1, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(C_API_PREDICT_RAW_SCORE),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # every iteration (as predict's default)
                ctypes.c_int(C_API_DTYPE_FLOAT64),
                ctypes.c_int32(columns),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self._handle),
            )
        )
        weakref.finalize(self, _free, self._handle)

    def raw(self, x: F64) -> float:
        """The log-odds of the single row of ``x`` (shape ``(1, columns)`` or ``(columns,)``)."""
        row = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if row.shape[0] != self.columns:
            raise ValueError(f"expected {self.columns} values, got {row.shape[0]}")
        with self._lock:
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self._length),
                    self._out_ptr,
                )
            )
            return float(self._out[0])


def _free(handle: ctypes.c_void_p) -> None:
    _LIB.LGBM_FastConfigFree(handle)
